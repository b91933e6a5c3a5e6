"""The Workers screen: Celery workers live from Celery events, and workers in step records.

With a broker (``wtm dashboard --broker``), the top half shows every Celery
worker heard of (online or offline, active tasks, tasks processed and failed
since the dashboard connected, heartbeat age, load) and the depth of the
``celery`` queue, from the app's latest :class:`~tui.celery_events.CelerySnapshot`;
a lost broker shows a banner above the table. Without one it says so: nothing
here is simulated. The bottom half lists the workers named in step records.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from runtime.config import mask_url
from tui.celery_events import CelerySnapshot, CeleryWorker
from tui.format import ago, clock
from tui.poller import RunSummary
from tui.screens.base import LiveScreen
from tui.widgets import Banner, LiveTable, Row

COLUMNS = [
    ("worker", "WORKER (host:pid)"),
    ("executions", "EXECUTIONS"),
    ("running", "RUNNING"),
    ("succeeded", "OK"),
    ("failed", "FAILED"),
    ("runs", "RUNS"),
    ("seen", "LAST SEEN"),
]
CELERY_COLUMNS = [
    ("worker", "CELERY WORKER"),
    ("state", "STATE"),
    ("active", "ACTIVE"),
    ("processed", "PROCESSED"),
    ("failed", "FAILED"),
    ("heartbeat", "HEARTBEAT"),
    ("load", "LOAD"),
]
NO_BROKER = (
    "No broker configured: Celery events are not connected yet.\n"
    "Start the dashboard with --broker redis://HOST:6379/0 (or set WTM_BROKER_URL) to see "
    "Celery workers, their active tasks and the queue depth. Nothing here is simulated."
)
CELERY_TICK = 1.0
"""Seconds between redraws of heartbeat ages (snapshots redraw too, at most twice a second)."""


@dataclass
class WorkerStat:
    """A worker's step executions across the runs the dashboard has read."""

    worker: str
    executions: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    runs: int = 0
    last_seen: str = ""


def worker_stats(runs: Iterable[RunSummary]) -> list[WorkerStat]:
    """Workers by name, summed over the step counts of ``runs``."""
    stats: dict[str, WorkerStat] = {}
    for summary in runs:
        for use in summary.counts.workers if summary.counts else ():
            stat = stats.setdefault(use.worker, WorkerStat(use.worker))
            stat.executions += use.executions
            stat.running += use.running
            stat.succeeded += use.succeeded
            stat.failed += use.failed
            stat.runs += 1
            stat.last_seen = max(stat.last_seen, use.last_seen)
    return sorted(stats.values(), key=lambda s: s.last_seen, reverse=True)


def worker_row(stat: WorkerStat, now: datetime) -> Row:
    """The cells of one worker."""
    return (
        Text(stat.worker, style="bold"),
        str(stat.executions),
        Text(str(stat.running), style="yellow") if stat.running else "0",
        str(stat.succeeded),
        Text(str(stat.failed), style="red") if stat.failed else "0",
        str(stat.runs),
        clock(stat.last_seen, now),
    )


def celery_row(worker: CeleryWorker, now: float, connected: bool) -> Row:
    """The cells of one Celery worker; its state is unknown while the broker is lost."""
    if not connected:
        state = Text("? unknown", style="dim")
    elif worker.online(now):
        state = Text("● online", style="green")
    else:
        state = Text("○ offline", style="bold red")
    return (
        Text(worker.hostname, style="bold"),
        state,
        Text(str(worker.active), style="yellow") if worker.active else "0",
        str(worker.processed),
        Text(str(worker.failed), style="red") if worker.failed else "0",
        ago(now - worker.last_seen if worker.last_seen else None),
        f"{worker.load:.2f}" if worker.load is not None else "",
    )


def celery_caption(snapshot: CelerySnapshot | None, broker: str) -> Text:
    """The lines above the Celery table: broker; queue depth and since when counts run."""
    text = Text.assemble(("Celery workers", "bold"), (f"  broker {broker}", "dim"), "\n")
    if snapshot is None:
        return text.append("connecting…", style="dim")
    if snapshot.depth is not None:
        text.append(f"queue {snapshot.queue}: ")
        text.append(f"{snapshot.depth} waiting", style="bold yellow" if snapshot.depth else "")
        text.append(f", {snapshot.unacked or 0} unacked  ")
    if snapshot.since is not None:
        text.append(f"counts since {datetime.fromtimestamp(snapshot.since):%H:%M:%S}", "dim")
    else:
        text.append("not connected yet", style="dim")
    if not snapshot.workers and snapshot.connected:
        text.append("\nno Celery worker heard of yet: start one with wtm worker", style="dim")
    return text


def celery_banner(snapshot: CelerySnapshot) -> str:
    """What the banner says while the broker cannot be read."""
    retry = f"retry {snapshot.failures} in {snapshot.retry_in:.1f}s"
    if snapshot.last_ok is not None:
        retry += f" · showing data from {datetime.fromtimestamp(snapshot.last_ok):%H:%M:%S}"
    return f"⚠ Celery broker {snapshot.broker} unreachable: {snapshot.error}\n  {retry}"


class WorkersScreen(LiveScreen):
    """Who runs the steps: Celery workers live, and the workers in step records."""

    DEFAULT_CSS: ClassVar[str] = """
    #celery-workers { height: 1fr; }
    #celery-caption { height: auto; padding: 0 1; }
    """

    @property
    def celery_table(self) -> LiveTable:
        """The Celery workers table (only with a broker)."""
        return self.query_one("#celery-table", LiveTable)

    def compose_body(self) -> ComposeResult:
        broker = self.dash.broker_url is not None
        if broker:
            with Vertical(id="celery-workers"):
                yield Static(id="celery-caption")
                yield Banner(id="celery-banner")
                yield LiveTable(CELERY_COLUMNS, id="celery-table")
        with Vertical(id="local-workers"):
            yield Static(id="workers-caption")
            yield LiveTable(COLUMNS, id="workers")
        if not broker:
            yield Static(Text(NO_BROKER), id="celery")

    def on_mount(self) -> None:
        super().on_mount()
        if self.dash.broker_url is None:
            self.query_one("#celery").border_title = "Celery workers and queues: no broker"
            self.query_one("#workers", LiveTable).focus()
            return
        self.celery_table.focus()
        self.show_celery()
        self.set_interval(CELERY_TICK, self._tick)

    def on_screen_resume(self) -> None:
        super().on_screen_resume()
        self.show_celery()

    def _tick(self) -> None:
        if self.is_current:
            self.show_celery()

    def show_celery(self) -> None:
        """Show the app's latest Celery snapshot (only the cells that changed are written)."""
        if self.dash.broker_url is None:
            return
        snapshot = self.dash.celery
        broker = snapshot.broker if snapshot else mask_url(self.dash.broker_url)
        self.query_one("#celery-caption", Static).update(celery_caption(snapshot, broker))
        banner = self.query_one("#celery-banner", Banner)
        if snapshot is not None and snapshot.error:
            banner.show(celery_banner(snapshot))
        else:
            banner.hide()
        workers = snapshot.workers if snapshot else ()
        now = time.time()
        connected = snapshot is not None and snapshot.connected
        self.celery_table.sync(
            {w.hostname: celery_row(w, now, connected) for w in workers}, lambda key: key
        )

    def refresh_data(self, full: bool = False) -> None:
        self.sync_banner()
        runs = self.dash.runs.values()
        stats = worker_stats(runs)
        now = datetime.now(UTC)
        order = {s.worker: n for n, s in enumerate(stats)}
        self.query_one("#workers", LiveTable).sync(
            {s.worker: worker_row(s, now) for s in stats}, order.__getitem__
        )
        executors = Counter(s.record.executor for s in runs)
        by_executor = ", ".join(f"{n} {name}" for name, n in sorted(executors.items()))
        recent = f"the {len(self.dash.runs)} most recent runs" + (
            f" ({by_executor})" if by_executor else ""
        )
        caption = Text.assemble(("Workers in step records", "bold"), (f"  of {recent}", "dim"))
        if not stats:
            caption.append("\nno step has run yet", style="dim")
        self.query_one("#workers-caption", Static).update(caption)
