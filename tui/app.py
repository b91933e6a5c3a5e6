"""The dashboard app: three modes (Runs, Workers, Plugins), drill-down screens, a poll loop.

One poll loop reads the store every ``interval`` seconds on the store thread
(:mod:`tui.storeio`) through a :class:`~tui.poller.StorePoller`, keeps the
latest runs and watched steps, and asks the visible screen to show them. A
failing store shows a banner and is retried with backoff; the data on screen
stays as last read. With a broker, a :class:`~tui.celery_events.CeleryMonitor`
follows the Celery workers on its own thread and hands snapshots over with
``call_from_thread``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from textual.app import App, ScreenStackError
from textual.binding import Binding, BindingType
from textual.css.query import NoMatches
from textual.notifications import SeverityLevel
from textual.screen import Screen

from runtime.stores.metadata import MetadataStore
from tui.actions import ActionError, Spawned, cancel_run, plan_rerun, spawn_rerun
from tui.celery_events import CeleryMonitor, CelerySnapshot
from tui.poller import DEFAULT_LIMIT, RunSummary, RunsUpdate, StepsUpdate, StorePoller
from tui.screens.base import LiveScreen
from tui.screens.lineage import LineageScreen
from tui.screens.modals import ConfirmScreen, HelpScreen, KeyGroup
from tui.screens.plugins import PluginsScreen
from tui.screens.run import RunScreen
from tui.screens.runs import RunsScreen
from tui.screens.step import StepScreen
from tui.screens.workers import WorkersScreen
from tui.storeio import ServicesFactory, StoreIO

DEFAULT_INTERVAL = 0.5
MAX_BACKOFF = 5.0


class DashboardApp(App[None]):
    """``wtm dashboard``: runs, their steps, values, lineage, workers and plugins, live."""

    CSS_PATH = "dashboard.tcss"
    TITLE = "wtm dashboard"
    ENABLE_COMMAND_PALETTE = False
    VIEWS: ClassVar[dict[str, type[LiveScreen]]] = {
        "runs": RunsScreen,
        "workers": WorkersScreen,
        "plugins": PluginsScreen,
    }
    MODES: ClassVar = dict(VIEWS)
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("1", "view('runs')", "Runs view", show=False),
        Binding("2", "view('workers')", "Workers view", show=False),
        Binding("3", "view('plugins')", "Plugins view", show=False),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(
        self,
        open_services: ServicesFactory,
        *,
        interval: float = DEFAULT_INTERVAL,
        limit: int = DEFAULT_LIMIT,
        workdir: Path | None = None,
        rerun_env: Mapping[str, str] | None = None,
        open_run: str | None = None,
        broker_url: str | None = None,
    ) -> None:
        super().__init__()
        self.io = StoreIO(open_services)
        self.interval = interval
        self.limit = limit
        self.workdir = workdir or Path.cwd()
        self.rerun_env = rerun_env
        self.open_run_id = open_run
        self.broker_url = broker_url
        """The Celery broker whose workers the Workers view shows; None: no Celery panel."""
        self.celery: CelerySnapshot | None = None
        self._celery_monitor: CeleryMonitor | None = None
        self.poller: StorePoller | None = None
        self.runs: dict[str, RunSummary] = {}
        self.changed_runs: frozenset[str] = frozenset()
        self.steps: dict[str, StepsUpdate] = {}
        self.loaded = False
        self.store_error: str | None = None
        self.last_ok: float | None = None
        self.polls = 0
        self.spawned: list[Spawned] = []
        self.notices: deque[str] = deque(maxlen=50)
        """The latest notifications, newest last."""
        self._watchers: Counter[str] = Counter()
        self._wake = asyncio.Event()
        self._display_error: str | None = None

    @property
    def store_url(self) -> str:
        """The metadata store's URL, once opened."""
        return self.io.described or "not opened yet"

    # lifetime

    def on_mount(self) -> None:
        self.switch_mode("runs")
        self.run_worker(self._poll_loop(), name="poll", group="poll", exclusive=True)
        if self.broker_url:
            self._celery_monitor = CeleryMonitor(self.broker_url, self._celery_from_thread)
            self._celery_monitor.start()
        if self.open_run_id:
            self.open_run(self.open_run_id)

    def on_unmount(self) -> None:
        if self._celery_monitor is not None:
            self._celery_monitor.stop()  # a daemon thread: it ends within a second, unjoined
        self.io.close()

    # Celery events

    def _celery_from_thread(self, snapshot: CelerySnapshot) -> None:
        """On the monitor's thread: hand ``snapshot`` to the UI thread."""
        monitor = self._celery_monitor
        if monitor is None or monitor.stopped:
            return
        with contextlib.suppress(RuntimeError):  # the app stopped running meanwhile
            self.call_from_thread(self._celery_update, snapshot)

    def _celery_update(self, snapshot: CelerySnapshot) -> None:
        """On the UI thread: keep ``snapshot``, say when the broker is lost or back, show it."""
        before = self.celery
        self.celery = snapshot
        if snapshot.error and (before is None or not before.error):
            lost = "lost" if before is not None and before.connected else "unreachable"
            self.notify(f"Celery broker {lost}: {snapshot.error}", severity="warning", timeout=6)
        elif snapshot.connected and before is not None and before.error:
            self.notify(f"Celery broker {snapshot.broker} reconnected", timeout=4)
        screen = self._shown()
        if not isinstance(screen, WorkersScreen) or not screen.is_mounted:
            return
        try:
            screen.show_celery()
        except NoMatches:  # the screen is being taken down (on exit)
            pass
        except Exception as exc:  # odd data must not take the dashboard down
            self.log.error(f"cannot show Celery workers: {type(exc).__name__}: {exc}")

    # polling

    def poll_now(self) -> None:
        """Poll at once instead of at the next tick."""
        self._wake.set()

    def watch_run(self, run_id: str) -> None:
        """A screen shows ``run_id``: follow its steps."""
        self._watchers[run_id] += 1
        self.poll_now()

    def unwatch_run(self, run_id: str) -> None:
        """A screen showing ``run_id`` closed."""
        self._watchers[run_id] -= 1
        if self._watchers[run_id] <= 0:
            del self._watchers[run_id]
            self.steps.pop(run_id, None)

    def _poll(self, watched: list[str]) -> tuple[RunsUpdate, dict[str, StepsUpdate]]:
        """One poll, on the store thread."""
        store: MetadataStore = self.io.store
        if self.poller is None:
            self.poller = StorePoller(store, self.limit)
        self.poller.store = store
        self.poller.watch(watched)
        return self.poller.poll_runs(), self.poller.poll_watched()

    async def _poll_loop(self) -> None:
        failures = 0
        while True:
            self._wake.clear()  # a wake-up asked for during this poll is kept for the next
            try:
                runs, steps = await self.io.call(self._poll, list(self._watchers))
            except Exception as exc:  # any store failure: banner, back off, try again
                failures += 1
                delay = min(MAX_BACKOFF, self.interval * 2**failures)
                self._failed(exc, delay, failures)
            else:
                failures = 0
                delay = self.interval
                self._apply(runs, steps)
            self._check_spawned()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    def _apply(self, runs: RunsUpdate, steps: dict[str, StepsUpdate]) -> None:
        self.runs = runs.runs
        self.changed_runs = runs.changed
        for run_id, update in steps.items():
            if run_id in self._watchers:
                self.steps[run_id] = update
        first = not self.loaded
        self.loaded = True
        self.store_error = None
        self.last_ok = time.time()
        self.polls += 1
        self._refresh_screen(full=first)

    def _failed(self, exc: Exception, delay: float, failures: int) -> None:
        self.io.reset()
        message = " ".join(str(exc).split()) or type(exc).__name__
        retry = f"retry {failures} in {delay:.1f}s"
        if self.last_ok is not None:
            retry += f" · showing data from {datetime.fromtimestamp(self.last_ok):%H:%M:%S}"
        self.store_error = f"⚠ store error: {message}\n  {retry}"
        self._refresh_screen(full=False)

    def _shown(self) -> Screen[Any] | None:
        """The screen shown now, or None while the app switches between two modes'
        screens (keys 1 2 3): a poll landing then found no screen and crashed the app."""
        try:
            return self.screen
        except ScreenStackError:
            return None

    def _refresh_screen(self, full: bool) -> None:
        screen = self._shown()
        if not isinstance(screen, LiveScreen) or not screen.is_mounted:
            return  # a screen still composing refreshes itself when it is shown
        try:
            screen.sync_banner()
            if self.loaded:
                screen.refresh_data(full=full)
        except NoMatches:  # the screen is being taken down (on exit): nothing to show
            pass
        except Exception as exc:  # odd data must not take the dashboard down mid-incident
            message = f"cannot show this screen: {type(exc).__name__}: {exc}"
            self.log.error(message)
            if message != self._display_error:
                self.notify(message, severity="error", timeout=10)
            self._display_error = message
        else:
            self._display_error = None

    # notifications

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        """Show a toast (plain text by default: IDs like ``002[3]`` are not markup); keep it."""
        self.notices.append(message)
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    # navigation

    def open_run(self, run_id: str) -> None:
        """Show one run."""
        self.push_screen(RunScreen(run_id))

    def open_step(self, run_id: str, step_id: str, item: int) -> None:
        """Show one step execution."""
        self.push_screen(StepScreen(run_id, step_id, item))

    def open_lineage(self, run_id: str, value_id: str | None = None) -> None:
        """Show the lineage of a value (default: of the run's final values)."""
        self.push_screen(LineageScreen(run_id, [value_id] if value_id else None))

    async def action_view(self, mode: str) -> None:
        """Show a view; pressed again in it, go back to its list from any drill-down."""
        if self.current_mode != mode:
            await self.switch_mode(mode)
            return
        while len(self.screen_stack) > 1 and not isinstance(self.screen, self.VIEWS[mode]):
            await self.pop_screen()

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        groups: list[KeyGroup] = [
            ("Everywhere", self.BINDINGS),
            ("Runs (1)", RunsScreen.BINDINGS),
            ("A run", RunScreen.BINDINGS),
            ("A step", StepScreen.BINDINGS),
            ("Lineage", LineageScreen.BINDINGS),
            ("Plugins (3)", PluginsScreen.BINDINGS),
            ("Confirmations", ConfirmScreen.BINDINGS),
        ]
        self.push_screen(HelpScreen(groups))

    # actions on runs

    def cancel_run(self, run_id: str) -> None:
        """Ask, then cancel ``run_id`` (its executor stops it within a second)."""
        summary = self.runs.get(run_id)
        if summary is not None and not summary.active:
            self.notify(f"run {run_id} is already {summary.record.status}", severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_worker(self._cancel(run_id), group="actions")

        self.push_screen(
            ConfirmScreen(
                f"Cancel run {run_id}?", "its executor stops unfinished steps within a second"
            ),
            answered,
        )

    async def _cancel(self, run_id: str) -> None:
        try:
            await self.io.with_store(lambda s: cancel_run(s, run_id))
        except ActionError as exc:
            self.notify(str(exc), severity="warning")
        except Exception as exc:  # a store failure: say so, keep running
            self.notify(f"cannot cancel {run_id}: {exc}", severity="error")
        else:
            self.notify(f"cancelled run {run_id}")
        self.poll_now()

    def rerun(self, run_id: str) -> None:
        """Ask, then re-run a failed run with the same inputs, if its manifest is found."""
        self.run_worker(self._rerun(run_id), group="actions")

    async def _rerun(self, run_id: str) -> None:
        try:
            run = await self.io.with_store(lambda s: s.get_run(run_id))
            if run is None:
                raise ActionError(f"no run {run_id}")
            plan = await self.io.call(plan_rerun, run, self.workdir)
        except ActionError as exc:
            self.notify(str(exc), severity="warning", timeout=8)
            return
        except Exception as exc:  # a store failure
            self.notify(f"cannot re-run {run_id}: {exc}", severity="error")
            return

        def answered(yes: bool | None) -> None:
            if not yes:
                return
            try:
                spawned = spawn_rerun(plan, self.rerun_env)
            except OSError as exc:
                self.notify(f"cannot start wtm run: {exc}", severity="error")
                return
            self.spawned.append(spawned)
            self.notify(
                f"re-running {run.pipeline}@{run.pipeline_version} "
                f"(pid {spawned.process.pid}); the new run appears at the top"
            )

        self.push_screen(
            ConfirmScreen(
                f"Re-run {run.pipeline}@{run.pipeline_version} with the same inputs?", plan.shown
            ),
            answered,
        )

    def _check_spawned(self) -> None:
        for spawned in list(self.spawned):
            outcome = spawned.outcome()
            if outcome is not None:
                self.spawned.remove(spawned)
                bad = "could not start" in outcome
                self.notify(outcome, severity="error" if bad else "information", timeout=8)
