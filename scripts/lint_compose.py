"""Rules for docker-compose.yml that `docker compose config` alone does not enforce.

Reads the resolved project (`docker compose config --format json`) on stdin and prints one line
per broken rule (exit status 1), so that they hold without a Docker engine to try them on:

- each Dockerfile is built by exactly one service, under a name (`image:`) that the other
  services running it share, so `docker compose build` builds it once;
- every health check gives its first answer within FIRST_ANSWER_SECONDS of the start (its first
  run, `start_interval` during `start_period`, plus its timeout), so `up --wait` is not held;
- a service that listens on a `--port` declares it (`expose:`);
- Celery workers run without gossip and mingle (gossip logs a traceback on broker reconnects).
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from stockpile.devstack.processes import QUIET_WORKER_OPTIONS

FIRST_ANSWER_SECONDS = 20.0
# Docker's default health check interval and timeout, when the file sets none.
DEFAULT_INTERVAL_SECONDS = 30.0
DEFAULT_TIMEOUT_SECONDS = 30.0
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|us|ns|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


def seconds(duration: str | None, default: float) -> float:
    """A compose duration ("1m30s", "5s") in seconds."""
    if not duration:
        return default
    parts = _DURATION_PART.findall(duration)
    if "".join(number + unit for number, unit in parts) != duration:
        raise ValueError(f"not a duration: {duration!r}")
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


def problems(project: dict[str, Any]) -> Iterator[str]:
    """Every rule the resolved compose project breaks, one sentence each."""
    services: dict[str, dict[str, Any]] = project.get("services", {})
    yield from _image_problems(services)
    for name, service in sorted(services.items()):
        yield from _health_problems(name, service.get("healthcheck"))
        yield from _port_problems(name, service)
        yield from _worker_problems(name, service)


def _image_problems(services: dict[str, dict[str, Any]]) -> Iterator[str]:
    builders: dict[tuple[str, str], list[str]] = defaultdict(list)
    built_images: dict[str, str] = {}
    for name, service in sorted(services.items()):
        build = service.get("build")
        if build is None:
            continue
        key = (build.get("context", "."), build.get("dockerfile", "Dockerfile"))
        builders[key].append(name)
        image = service.get("image")
        if not image:
            yield f"{name}: builds an image without naming it (`image:`): no service can share it"
        else:
            built_images[image] = name
    for (_, dockerfile), names in sorted(builders.items()):
        if len(names) > 1:
            yield f"{dockerfile} is built by {', '.join(names)}: build it in one, share its image"
    users: dict[str, list[str]] = defaultdict(list)
    for name, service in sorted(services.items()):
        image = service.get("image")
        if image in built_images and service.get("build") is None:
            users[image].append(name)
    for image, builder in sorted(built_images.items()):
        if not users[image]:
            yield f"{builder}: no other service runs its image {image} (is `image:` shared?)"


def _health_problems(name: str, check: dict[str, Any] | None) -> Iterator[str]:
    if check is None or check.get("disable"):
        return
    interval = seconds(check.get("interval"), DEFAULT_INTERVAL_SECONDS)
    first_run = interval
    if check.get("start_period") and check.get("start_interval"):
        first_run = seconds(check["start_interval"], interval)
    answer = first_run + seconds(check.get("timeout"), DEFAULT_TIMEOUT_SECONDS)
    if answer > FIRST_ANSWER_SECONDS:
        yield (
            f"{name}: the health check's first answer may come {answer:g} s after the start"
            f" (first run after {first_run:g} s, plus its timeout); at most"
            f" {FIRST_ANSWER_SECONDS:g} s (set start_interval)"
        )


def _listening_ports(command: list[str]) -> Iterator[str]:
    for index, argument in enumerate(command):
        if argument == "--port" and index + 1 < len(command):
            yield command[index + 1]
        elif argument.startswith("--port="):
            yield argument.removeprefix("--port=")


def _port_problems(name: str, service: dict[str, Any]) -> Iterator[str]:
    exposed = {str(port) for port in service.get("expose") or []}
    for port in _listening_ports(service.get("command") or []):
        if port not in exposed:
            yield f"{name}: listens on port {port} but does not declare it (`expose:`)"


def _worker_problems(name: str, service: dict[str, Any]) -> Iterator[str]:
    command = service.get("command") or []
    if "celery" in command and "worker" in command:
        missing = [option for option in QUIET_WORKER_OPTIONS if option not in command]
        if missing:
            yield f"{name}: a Celery worker without {' '.join(missing)}"


def main() -> int:
    """Check the project on stdin; print each problem."""
    found = list(problems(json.load(sys.stdin)))
    for problem in found:
        sys.stderr.write(f"docker-compose.yml: {problem}\n")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
