"""Container health checks that need no curl: ``python -m stockpile.healthcheck ...``.

``http URL``: the URL answers 2xx (the API's /readyz, Flower's /healthcheck, the sandbox).
``fresh PATH --max-age SECONDS``: a file named PATH, or PATH plus a suffix, changed recently;
celery beat rewrites its schedule file at least every 3 minutes while it runs, whichever dbm
flavour (``schedule``, ``schedule.db``, ``schedule.dat``...) Python picked for it.
Workers are checked with Celery's own ``celery -A worker.celery_app inspect ping``.
Exit status 0 means healthy; otherwise one line on stderr says why.
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path


def check_http(url: str, *, timeout: float) -> str | None:
    """None when `url` answers 2xx within `timeout` seconds, else the reason it does not."""
    try:
        # Only local probes of our own services, never proxied.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(url, timeout=timeout) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        return f"{url} answered {exc.code}"
    except (OSError, ValueError) as exc:
        return f"{url} did not answer: {exc}"
    return None if 200 <= status < 300 else f"{url} answered {status}"


def check_fresh(path: Path, *, max_age: float, now: float) -> str | None:
    """None when `path` (or a file named like it plus a suffix) changed within `max_age` s."""
    candidates = [path, *path.parent.glob(f"{path.name}.*")] if path.parent.is_dir() else []
    times = [c.stat().st_mtime for c in candidates if c.is_file()]
    if not times:
        return f"{path} does not exist"
    age = now - max(times)
    return None if age <= max_age else f"{path} last changed {age:.0f} s ago"


def main(argv: Sequence[str] | None = None) -> int:
    """Run one check; 0 when healthy."""
    parser = argparse.ArgumentParser(prog="python -m stockpile.healthcheck", description=__doc__)
    checks = parser.add_subparsers(dest="check", required=True)
    http = checks.add_parser("http", help="the URL answers 2xx")
    http.add_argument("url")
    http.add_argument("--timeout", type=float, default=5.0)
    fresh = checks.add_parser("fresh", help="the file changed recently")
    fresh.add_argument("path", type=Path)
    fresh.add_argument("--max-age", type=float, required=True, help="seconds")
    args = parser.parse_args(argv)
    if args.check == "http":
        problem = check_http(args.url, timeout=args.timeout)
    else:
        problem = check_fresh(args.path, max_age=args.max_age, now=time.time())
    if problem is not None:
        sys.stderr.write(f"unhealthy: {problem}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
