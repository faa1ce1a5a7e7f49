"""As root, the server's account is created once even when several processes start at once.

The suite's workers all start PostgreSQL together; on a fresh machine the `pgserver` account
does not exist yet, and concurrent `useradd` runs lost one another's /etc/passwd entries.
"""

from __future__ import annotations

import multiprocessing
import os
import pwd
import subprocess
import uuid
from collections.abc import Iterator
from multiprocessing.synchronize import Barrier

import pytest

from stockpile.localstack._process import system_account

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (creates an account)")

STARTERS = 4


@pytest.fixture
def account_name() -> Iterator[str]:
    name = f"sptest{uuid.uuid4().hex[:10]}"
    yield name
    subprocess.run(["userdel", name], capture_output=True, check=False)


def _create(barrier: Barrier, name: str, uids: multiprocessing.Queue[int | str]) -> None:
    barrier.wait()
    try:
        uids.put(system_account(name).pw_uid)
    except Exception as exc:  # reported to the test, which fails on it
        uids.put(repr(exc))


def test_concurrent_starts_create_the_account_once(account_name: str) -> None:
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(STARTERS)
    uids: multiprocessing.Queue[int | str] = context.Queue()
    starters = [
        context.Process(target=_create, args=(barrier, account_name, uids)) for _ in range(STARTERS)
    ]
    for starter in starters:
        starter.start()
    answers = [uids.get(timeout=60) for _ in starters]
    for starter in starters:
        starter.join(timeout=60)

    entry = pwd.getpwnam(account_name)
    assert answers == [entry.pw_uid] * STARTERS
    with open("/etc/passwd") as passwd:
        assert sum(line.startswith(f"{account_name}:") for line in passwd) == 1


def test_an_existing_account_is_used_as_it_is(account_name: str) -> None:
    subprocess.run(["useradd", "--system", "--no-create-home", account_name], check=True)
    existing = pwd.getpwnam(account_name)

    assert system_account(account_name) == existing
