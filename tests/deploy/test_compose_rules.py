"""The compose rules of `./run lint` on the real file, and on copies that break each one; what
the resolved file runs by default."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from scripts.lint_compose import problems, seconds
from tests.processes import REPO_ROOT

Project = dict[str, Any]
COMPOSE = Path(sys.executable).with_name("docker-compose")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """docker-compose.yml resolved by the Compose binary, with the sandbox profile."""
    env_file = tmp_path_factory.mktemp("compose") / "lint.env"
    env_file.write_text("POSTGRES_PASSWORD=lint\nFLOWER_BASIC_AUTH=lint:lint\nSECRETS_GID=1000\n")
    resolved = subprocess.run(
        [str(COMPOSE), "--project-directory", ".", "--file", "docker-compose.yml"]
        + ["--env-file", str(env_file), "--profile", "sandbox", "config", "--format", "json"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    loaded: Project = json.loads(resolved.stdout)
    return loaded


def test_the_compose_file_keeps_every_rule(project: Project) -> None:
    assert list(problems(project)) == []


def test_every_health_check_answers_first_within_twenty_seconds(project: Project) -> None:
    for name, service in project["services"].items():
        check = service.get("healthcheck", {})
        if check.get("disable"):
            continue
        first = seconds(check.get("start_interval") or check["interval"], 30)
        assert first + seconds(check["timeout"], 30) <= 20, name


def _build_twice(project: Project) -> None:
    services = project["services"]
    services["beat"]["build"] = copy.deepcopy(services["worker"]["build"])


def _unnamed_image(project: Project) -> None:
    del project["services"]["api"]["image"]


def _slow_first_check(project: Project) -> None:
    del project["services"]["beat"]["healthcheck"]["start_interval"]


def _hidden_port(project: Project) -> None:
    project["services"]["sandbox"]["expose"] = ["8000"]


def _extra_port(project: Project) -> None:
    project["services"]["sandbox"]["expose"] = ["8765", "8000"]


def _gossiping_worker(project: Project) -> None:
    project["services"]["worker"]["command"].remove("--without-gossip")


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (_build_twice, "Dockerfile.worker is built by beat, worker"),
        (_unnamed_image, "api: builds an image without naming it"),
        (_slow_first_check, "beat: the health check's first answer may come 70 s"),
        (_hidden_port, "sandbox: listens on port 8765 but does not declare it"),
        (_extra_port, "sandbox: advertises port 8000 (expose:) but listens on 8765"),
        (_gossiping_worker, "worker: a Celery worker without --without-gossip"),
    ],
)
def test_each_rule_catches_its_breakage(
    project: Project, breakage: Callable[[Project], None], expected: str
) -> None:
    broken = copy.deepcopy(project)
    breakage(broken)
    found = list(problems(broken))
    assert any(problem.startswith(expected) for problem in found), found


def _build_from_copy(
    project: Project, service: str, folder: Path, edit: Callable[[str], str]
) -> None:
    """Point `service`'s build at an edited copy of its Dockerfile in `folder`."""
    build = project["services"][service]["build"]
    original = Path(build["context"]) / build["dockerfile"]
    (folder / original.name).write_text(edit(original.read_text()))
    build["context"] = str(folder)


def test_the_images_ports_and_health_checks_are_held_to_the_same_rules(
    project: Project, tmp_path: Path
) -> None:
    broken = copy.deepcopy(project)
    # The sandbox: the API image advertised 8000 to every service running it.
    _build_from_copy(broken, "api", tmp_path, lambda text: text + "EXPOSE 8000\n")
    # Without start_interval the worker image's check first answers after 30 s + 10 s.
    _build_from_copy(
        broken, "worker", tmp_path, lambda text: text.replace(" --start-interval=5s", "")
    )
    del broken["services"]["flower"]["healthcheck"]  # then it inherits its image's
    found = list(problems(broken))
    for expected in (
        "migrate: advertises port 8000 (EXPOSE in Dockerfile.api) but listens on none",
        "sandbox: advertises port 8000 (EXPOSE in Dockerfile.api) but listens on 8765",
        "Dockerfile.worker: the health check's first answer may come 40 s",
        "flower: the health check's first answer may come 40 s",
    ):
        assert any(problem.startswith(expected) for problem in found), (expected, found)
    assert not any(problem.startswith("api:") for problem in found), found  # it listens on 8000


def test_durations_are_read_as_compose_writes_them() -> None:
    assert seconds("1m0s", 0) == 60
    assert seconds("1m30s", 0) == 90
    assert seconds("500ms", 0) == 0.5
    assert seconds(None, 30) == 30
    with pytest.raises(ValueError, match="not a duration"):
        seconds("5 seconds", 0)


def test_beat_schedules_retention_and_the_worker_keeps_its_default_windows(
    project: Project,
) -> None:
    # The beat of worker.celery_app schedules retention unconditionally
    # (tests/worker/test_retention_e2e.py runs it); left out of `.env`, the windows and the
    # interval reach both processes empty, which Settings reads as "use the default".
    services = project["services"]
    assert services["beat"]["command"][:4] == ["celery", "-A", "worker.celery_app", "beat"]
    assert services["worker"]["command"][:4] == ["celery", "-A", "worker.celery_app", "worker"]
    for name in ("beat", "worker"):
        environment = services[name]["environment"]
        for key in ("JOB_RETENTION_DAYS", "API_CALL_RETENTION_DAYS", "RETENTION_INTERVAL_SECONDS"):
            assert environment[key] == "", (name, key)
