"""Resident memory of a process tree, read from /proc (psutil is not needed).

``VmRSS`` now, ``VmHWM`` its peak since the process started, ``Pss`` (from
``smaps_rollup``) its proportional share, which does not count pages shared
with the parent (forked pool children share the parent's imports) twice.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

MB = 1024 * 1024


def children(pid: int) -> list[int]:
    """Direct children of ``pid``."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return sorted(set(found))


def status(pid: int) -> dict[str, float]:
    """VmRSS, VmHWM (and Pss when readable) of ``pid`` in MB."""
    values: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024 / MB
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                values["Pss"] = int(line.split()[1]) * 1024 / MB
    except OSError:
        pass
    return values


def tree(pid: int) -> dict[int, dict[str, float]]:
    """:func:`status` of ``pid`` and of its direct children (a Celery prefork pool)."""
    return {p: status(p) for p in [pid, *children(pid)]}


def summary(pid: int) -> dict[str, Any]:
    """Now: the parent, each child, the largest child and the sums over the tree."""
    now = tree(pid)
    kids = {p: v for p, v in now.items() if p != pid}
    return {
        "parent_rss_mb": round(now[pid].get("VmRSS", 0), 1),
        "children_rss_mb": [round(v.get("VmRSS", 0), 1) for v in kids.values()],
        "children_peak_mb": [round(v.get("VmHWM", 0), 1) for v in kids.values()],
        "max_child_rss_mb": round(max((v.get("VmRSS", 0) for v in kids.values()), default=0), 1),
        "max_child_peak_mb": round(max((v.get("VmHWM", 0) for v in kids.values()), default=0), 1),
        "sum_rss_mb": round(sum(v.get("VmRSS", 0) for v in now.values()), 1),
        "sum_pss_mb": round(sum(v.get("Pss", 0) for v in now.values()), 1),
    }


class Sampler:
    """Samples a process tree in a thread while :meth:`running`; keeps the largest pool
    child RSS and the largest tree sums seen over every period it ran."""

    def __init__(self, pid: int, every: float = 0.2) -> None:
        self.pid = pid
        self.every = every
        self.max_child_rss = 0.0
        self.max_sum_rss = 0.0
        self.max_sum_pss = 0.0

    def sample(self) -> None:
        now = tree(self.pid)
        kids = [v.get("VmRSS", 0.0) for p, v in now.items() if p != self.pid]
        self.max_child_rss = max([self.max_child_rss, *kids])
        self.max_sum_rss = max(self.max_sum_rss, sum(v.get("VmRSS", 0) for v in now.values()))
        self.max_sum_pss = max(self.max_sum_pss, sum(v.get("Pss", 0) for v in now.values()))

    @contextmanager
    def running(self) -> Iterator[Sampler]:
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(self.every):
                self.sample()

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()
            self.sample()
