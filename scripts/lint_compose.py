"""Rules for docker-compose.yml that `docker compose config` alone does not enforce.

Reads the resolved project (`docker compose config --format json`) on stdin and prints one line
per broken rule (exit status 1), so that they hold without a Docker engine to try them on:

- each Dockerfile is built by exactly one service, under a name (`image:`) that the other
  services running it share, so `docker compose build` builds it once;
- every health check gives its first answer within FIRST_ANSWER_SECONDS of the start (its first
  run, `start_interval` during `start_period`, plus its timeout), so `up --wait` is not held;
  that includes each Dockerfile's HEALTHCHECK, which a service without its own inherits;
- a service advertises exactly the ports it listens on (`--port` of its command): it declares
  them (`expose:`), and neither it nor its image's EXPOSE names another (an image shared by
  services listening on different ports, or on none, must leave ports to them);
- Celery workers run without gossip and mingle (gossip logs a traceback on broker reconnects).

A service's command and health check are its own, or else its image's (CMD, HEALTHCHECK) when
compose builds that image.
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
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


@dataclass(frozen=True, slots=True)
class Dockerfile:
    """What a Dockerfile's final stage gives every container of its image."""

    name: str
    command: list[str] = field(default_factory=list)  # CMD, exec form
    exposed: list[str] = field(default_factory=list)  # EXPOSE
    healthcheck: dict[str, Any] | None = None  # HEALTHCHECK, as compose spells its options

    @classmethod
    def read(cls, path: Path) -> Dockerfile:
        """The CMD, EXPOSE and HEALTHCHECK of the file's last stage (the image compose runs)."""
        command: list[str] = []
        exposed: list[str] = []
        healthcheck: dict[str, Any] | None = None
        for instruction, arguments in _instructions(path.read_text()):
            if instruction == "FROM":
                command, exposed, healthcheck = [], [], None
            elif instruction == "CMD":
                command = _exec_form(arguments)
            elif instruction == "EXPOSE":
                exposed += [port.split("/")[0] for port in arguments.split()]
            elif instruction == "HEALTHCHECK":
                healthcheck = _healthcheck_options(arguments)
        return cls(path.name, command, exposed, healthcheck)


def _instructions(text: str) -> Iterator[tuple[str, str]]:
    """(INSTRUCTION, its arguments) per instruction, continuation lines joined, comments gone."""
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # a comment or blank line inside a continuation does not end it
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        instruction, _, arguments = (pending + line).partition(" ")
        pending = ""
        yield instruction.upper(), arguments.strip()


def _exec_form(arguments: str) -> list[str]:
    if arguments.startswith("["):
        parsed: list[str] = json.loads(arguments)
        return parsed
    return ["/bin/sh", "-c", arguments]


def _healthcheck_options(arguments: str) -> dict[str, Any] | None:
    words = arguments.split()
    if words[:1] == ["NONE"]:
        return None
    options: dict[str, Any] = {}
    for word in words:
        if not word.startswith("--"):
            break  # CMD and its command follow the options
        key, _, value = word.removeprefix("--").partition("=")
        options[key.replace("-", "_")] = value
    return options


def problems(project: dict[str, Any]) -> Iterator[str]:
    """Every rule the resolved compose project breaks, one sentence each."""
    services: dict[str, dict[str, Any]] = project.get("services", {})
    yield from _image_problems(services)
    images = _built_images(services)
    for dockerfile in sorted(images.values(), key=lambda d: d.name):
        yield from _health_problems(dockerfile.name, dockerfile.healthcheck)
    for name, service in sorted(services.items()):
        image = images.get(service.get("image", ""))
        command: list[str] = service.get("command") or (image.command if image else [])
        check = service.get("healthcheck", image.healthcheck if image else None)
        yield from _health_problems(name, check)
        yield from _port_problems(name, service, command, image)
        yield from _worker_problems(name, command)


def _built_images(services: dict[str, dict[str, Any]]) -> dict[str, Dockerfile]:
    """The Dockerfile of every image compose builds, by the image's name."""
    images: dict[str, Dockerfile] = {}
    for service in services.values():
        build, image = service.get("build"), service.get("image")
        if build is not None and image:
            path = Path(build.get("context", ".")) / build.get("dockerfile", "Dockerfile")
            images[image] = Dockerfile.read(path)
    return images


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


def _port_problems(
    name: str, service: dict[str, Any], command: list[str], image: Dockerfile | None
) -> Iterator[str]:
    declared = {str(port) for port in service.get("expose") or []}
    listening = set(_listening_ports(command))
    for port in sorted(listening - declared):
        yield f"{name}: listens on port {port} but does not declare it (`expose:`)"
    advertised = declared | set(image.exposed if image else [])
    for port in sorted(advertised - listening):
        where = f"EXPOSE in {image.name}" if image and port in image.exposed else "expose:"
        listens_on = ", ".join(sorted(listening)) or "none"
        yield f"{name}: advertises port {port} ({where}) but listens on {listens_on}"


def _worker_problems(name: str, command: list[str]) -> Iterator[str]:
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
