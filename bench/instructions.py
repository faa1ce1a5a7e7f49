"""CPU instructions per read request, counted by valgrind's callgrind, for this and earlier commits.

python -m bench.instructions                        # this checkout, every read case
python -m bench.instructions --baseline ../wt-before --baseline ../wt-other --only statistics

Instructions do not depend on the machine's load, unlike req/s: this is the figure that tells
two commits' API code apart by a few percent. For each checkout and each read case of the read
benchmark (bench.readapi.read_cases), `bench/callgrind_driver.py` runs that checkout's `api.main`
app in-process under `valgrind --tool=callgrind`, as uvicorn calls it (lifespan, then
`app(scope, receive, send)` per request; uvloop, the real read pool and PostgreSQL), and counts
the instructions of `--requests` requests after `--warmup` ones. uvicorn's own HTTP parsing and
writing are not counted: the same code on every commit. Every checkout must answer every case
byte for byte the same. Throwaway PostgreSQL and Redis unless DATABASE_URL / REDIS_URL are set;
the data set is the read benchmark's, smaller: 50 symbols x 25 years, inserted day by day.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlencode

from bench.callgrind_driver import WINDOW
from bench.dataset import load_dataset
from bench.processes import checkout_label
from bench.readapi import ReadCase, read_cases
from bench.stack import fresh_database, running_stack
from shared.core.settings import get_settings

logger = logging.getLogger("bench.instructions")

ROOT = Path(__file__).resolve().parents[1]
DRIVER = Path(__file__).with_name("callgrind_driver.py")
SYMBOLS, YEARS = 50, 25
INSTALL = (
    "bench.instructions needs valgrind (with its headers) and gcc: apt-get install valgrind gcc"
)

# Callgrind's client requests, callable through ctypes. Instrumentation starts with the counted
# window (`--instr-atstart=no`: the imports and the warm-up run at valgrind's lighter pace).
_CLIENT_REQUESTS = """
#include <valgrind/callgrind.h>
void counting_start(void) { CALLGRIND_START_INSTRUMENTATION; CALLGRIND_ZERO_STATS; }
void counting_dump(const char *name) {
    CALLGRIND_DUMP_STATS_AT(name);
    CALLGRIND_STOP_INSTRUMENTATION;
}
"""


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.instructions", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        action="append",
        default=[],
        help="a checkout of an earlier commit, counted with this checkout's venv; repeatable",
    )
    parser.add_argument("--requests", type=int, default=1000, help="counted requests per case")
    parser.add_argument("--warmup", type=int, default=200, help="requests before counting")
    parser.add_argument("--only", help="read cases whose name contains this text")
    return parser.parse_args(argv)


def _client_requests(folder: Path) -> Path:
    """The shared object with counting_start() and counting_dump(name), built with gcc."""
    if shutil.which("valgrind") is None or shutil.which("gcc") is None:
        sys.exit(INSTALL)
    source, library = folder / "client_requests.c", folder / "client_requests.so"
    source.write_text(_CLIENT_REQUESTS)
    done = subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O2", "-o", str(library), str(source)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"{INSTALL} (gcc: {done.stderr.strip().splitlines()[0]})")
    return library


def count(
    checkout: Path,
    case: ReadCase,
    *,
    library: Path,
    env: dict[str, str],
    warmup: int,
    requests: int,
) -> tuple[float, dict[str, object]]:
    """Instructions per request of `case` on `checkout`'s app, and the driver's report."""
    with tempfile.TemporaryDirectory(prefix="callgrind-") as folder:
        out = Path(folder) / "callgrind.out"
        command = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={out}",
            f"--log-file={folder}/valgrind.log",
            sys.executable,
            str(DRIVER),
            str(checkout),
            str(library),
            case.path,
            urlencode(case.params),
            str(warmup),
            str(requests),
        ]
        done = subprocess.run(
            command, cwd=checkout, env=env, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            log = Path(folder, "valgrind.log").read_text(errors="replace")
            raise RuntimeError(f"{checkout}: {case.name} failed:\n{done.stderr}\n{log[-2000:]}")
        report: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
        return _window_total(Path(folder)) / requests, report


def _window_total(folder: Path) -> int:
    """Ir of the counted window: the dump named WINDOW (the exit dump holds the shutdown)."""
    for dump in folder.glob("callgrind.out*"):
        text = dump.read_text(errors="replace")
        if f"desc: Trigger: Client Request: {WINDOW}\n" in text:
            total = re.search(r"^(?:totals|summary): (\d+)", text, re.MULTILINE)
            if total is None:
                raise RuntimeError(f"{dump}: no totals line")
            return int(total.group(1))
    raise RuntimeError(f"{folder}: callgrind wrote no dump named {WINDOW}")


def table(labels: list[str], cases: list[str], counts: dict[str, dict[str, float]]) -> str:
    """Thousands of instructions per request, case by checkout, and this commit over each."""
    this, earlier = labels[0], labels[1:]
    head = ["case", *labels, *(f"{this} / {label}" for label in earlier)]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|--:" * (len(head) - 1) + "|"]
    for case in cases:
        row = [case, *(f"{counts[label][case] / 1000:,.1f}" for label in labels)]
        row += [f"{counts[this][case] / counts[label][case]:.4f}" for label in earlier]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _count_cases(
    checkouts: list[Path],
    labels: list[str],
    cases: list[ReadCase],
    *,
    library: Path,
    env: dict[str, str],
    warmup: int,
    requests: int,
) -> dict[str, dict[str, float]]:
    """Instructions per request by checkout label and case name; the answers must agree."""
    counts: dict[str, dict[str, float]] = {label: {} for label in labels}
    for case in cases:
        digests: dict[str, object] = {}
        for checkout, label in zip(checkouts, labels, strict=True):
            per_request, report = count(
                checkout, case, library=library, env=env, warmup=warmup, requests=requests
            )
            module = Path(str(report["module"]))
            if report["status"] != 200 or not module.is_relative_to(checkout):
                raise RuntimeError(f"{label}: {case.name}: {report}")
            digests[label] = report["sha256"]
            counts[label][case.name] = per_request
            logger.info("%s, %s: %.0f instructions a request", case.name, label, per_request)
        if len(set(digests.values())) > 1:
            raise RuntimeError(f"{case.name}: the checkouts answer differently: {digests}")
    return counts


def main(argv: list[str] | None = None) -> int:
    """Count every case on every checkout and print the table."""
    args = _arguments(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("alembic", "stockpile.localstack", "shared"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as folder:
        library = _client_requests(Path(folder))  # or exit, before any server starts
        checkouts = [ROOT, *(path.resolve() for path in args.baseline)]
        labels: list[str] = []
        for path in checkouts:  # two checkouts of one commit (one with changes) stay apart
            label = checkout_label(path)
            labels.append(label if label not in labels else f"{label} ({path.name})")
        settings = get_settings()
        with (
            running_stack(settings.database_url, settings.redis_url) as stack,
            fresh_database(stack, "instructions") as url,
        ):
            data = load_dataset(
                url, symbols=SYMBOLS, years=YEARS, end_year=dt.date.today().year - 1
            )
            cases = [case for case in read_cases(data) if not args.only or args.only in case.name]
            counts = _count_cases(
                checkouts,
                labels,
                cases,
                library=library,
                env={**os.environ, **stack.process_env(url), "PYTHONHASHSEED": "0"},
                warmup=args.warmup,
                requests=args.requests,
            )
    print(
        f"Instructions per request, thousands ({args.requests} requests after {args.warmup};"
        f" {data.rows:,} rows, {SYMBOLS} symbols x {YEARS} years, day by day):\n"
    )
    print(table(labels, [case.name for case in cases], counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
