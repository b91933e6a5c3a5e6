"""The Workers screen: local workers seen in step records, and the Celery panel to come."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from tui.format import clock
from tui.poller import RunSummary
from tui.screens.base import LiveScreen
from tui.widgets import LiveTable, Row

COLUMNS = [
    ("worker", "WORKER (host:pid)"),
    ("executions", "EXECUTIONS"),
    ("running", "RUNNING"),
    ("succeeded", "OK"),
    ("failed", "FAILED"),
    ("runs", "RUNS"),
    ("seen", "LAST SEEN"),
]
CELERY_PLACEHOLDER = (
    "Celery events are not connected yet.\n"
    "Once the Celery executor is wired in, this panel shows Celery workers, their "
    "active tasks and queue depth. Nothing here is simulated."
)


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


class WorkersScreen(LiveScreen):
    """Who ran the steps."""

    def compose_body(self) -> ComposeResult:
        with Vertical(id="local-workers"):
            yield Static(id="workers-caption")
            yield LiveTable(COLUMNS, id="workers")
        yield Static(Text(CELERY_PLACEHOLDER), id="celery")

    def on_mount(self) -> None:
        self.query_one("#celery").border_title = "Celery workers and queues: not connected"
        self.query_one(LiveTable).focus()

    def refresh_data(self, full: bool = False) -> None:
        self.sync_banner()
        runs = self.dash.runs.values()
        stats = worker_stats(runs)
        now = datetime.now(UTC)
        order = {s.worker: n for n, s in enumerate(stats)}
        self.query_one("#workers", LiveTable).sync(
            {s.worker: worker_row(s, now) for s in stats}, order.__getitem__
        )
        local = sum(1 for s in runs if s.record.executor == "local")
        caption = Text.assemble(
            ("Local workers", "bold"),
            (
                f"  seen in the step records of the {len(self.dash.runs)} most recent runs "
                f"({local} local)",
                "dim",
            ),
        )
        if not stats:
            caption.append("\nno step has run yet", style="dim")
        self.query_one("#workers-caption", Static).update(caption)
