#!/usr/bin/env bash
# Run the whole suite several times in a row while both cores are kept busy by another load:
# the proof that no test depends on how fast the machine is. Stops at the first failing run.
#
#   scripts/test-under-load.sh [RUNS] [-- extra pytest arguments]
#
# The load is stress-ng (Debian: apt-get install stress-ng) with one CPU hog per core, or
# Python busy loops where stress-ng is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
[ $# -gt 0 ] && shift
[ "${1:-}" = "--" ] && shift
cores=$(nproc)

if command -v stress-ng >/dev/null; then
    stress-ng --cpu "$cores" --timeout 0 --quiet &
else
    python3 -c "import multiprocessing as m
def spin():
    while True: pass
ps = [m.Process(target=spin) for _ in range(m.cpu_count())]
[p.start() for p in ps]; [p.join() for p in ps]" &
fi
load=$!
# The hogs first: killed first, their parent would leave them to init, spinning on.
trap 'pkill -P "$load" 2>/dev/null; kill -- "$load" 2>/dev/null || true' EXIT

for run in $(seq 1 "$runs"); do
    echo "=== run $run of $runs under load ($(uptime | sed 's/.*load average/load average/'))"
    started=$(date +%s)
    ./run test "$@"
    echo "=== run $run passed in $(( $(date +%s) - started )) s"
done
