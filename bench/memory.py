"""Peak resident memory (sampled every 0.2 s) and CPU time of benchmark processes, via psutil."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psutil

SAMPLE_SECONDS = 0.2


def process_tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by `pid` and its live children."""
    root = psutil.Process(pid)
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


@dataclass
class _Watch:
    process: psutil.Process
    children: bool
    peak: int = 0


@dataclass
class RssSampler:
    """Samples watched processes (or their children) in a thread; keeps each role's peak."""

    interval: float = SAMPLE_SECONDS
    _watches: dict[str, _Watch] = field(default_factory=dict)
    _peaks: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def watch(self, role: str, pid: int, *, children: bool = False) -> None:
        """Sample `pid` itself, or the largest of its (recursive) children, under `role`."""
        with self._lock:
            self._watches[role] = _Watch(psutil.Process(pid), children)

    def unwatch(self, role: str) -> None:
        """Stop sampling `role`; its peak so far is kept."""
        with self._lock:
            self._watches.pop(role, None)

    def peaks(self) -> dict[str, int]:
        """The largest RSS seen per role, in bytes."""
        with self._lock:
            return dict(self._peaks)

    def sample(self) -> None:
        """Take one sample of every watched role."""
        with self._lock:
            watches = list(self._watches.items())
        for role, watch in watches:
            try:
                processes = (
                    watch.process.children(recursive=True) if watch.children else [watch.process]
                )
                rss = max((p.memory_info().rss for p in processes), default=0)
            except psutil.Error:
                continue
            with self._lock:
                self._peaks[role] = max(self._peaks.get(role, 0), rss)

    @contextmanager
    def running(self) -> Iterator[RssSampler]:
        """Sample in a background thread for the duration of the block."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(self.interval):
                self.sample()

        thread = threading.Thread(target=loop, name="rss-sampler", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()
            self.sample()
