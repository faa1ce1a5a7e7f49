"""Clean-up of the clusters a persistent embedded PostgreSQL keeps outside its folder as root."""

from __future__ import annotations

import shutil
from pathlib import Path


def remove_linked_clusters(folder: Path) -> None:
    """Delete `folder` and, as root, the clusters its `pgdata` links point to."""
    for link in folder.rglob("pgdata"):
        if link.is_symlink():
            shutil.rmtree(link.resolve().parent, ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)
