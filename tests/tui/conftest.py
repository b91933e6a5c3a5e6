"""Fixtures of the dashboard tests: a real store filled by real runs of the test plugins."""

from __future__ import annotations

import io
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from textual.app import App
from textual.pilot import Pilot

from runtime.config import Settings
from runtime.execute import execute, prepare
from runtime.executors.session import RunSession
from runtime.services import Services
from runtime.stores.metadata import NO_ITEM
from tests.conftest import TASKS

TEST_TASKS = [TASKS / name for name in ("add", "fail_until", "detect", "describe")]
HOLD = Path(__file__).resolve().parent / "tasks" / "hold"
"""A task that runs until the test opens its gate: steps end when the test says so."""
HEADER = "apiVersion: wtm/v1\nkind: Pipeline\nname: {name}\nversion: 1.0.0\n"

DIAMOND = """
inputs:
  x: {schema: {type: number}}
steps:
  - {id: "001", task: add, with: {a: $inputs.x, b: 1}}
  - {id: "002", task: add, with: {a: $001.sum, b: 10}}
  - {id: "003", task: add, with: {a: $001.sum, b: 100}}
  - {id: "004", task: add, with: {a: $002.sum, b: $003.sum}}
outputs:
  total: $004.sum
"""
FAILING = """
inputs:
  value: {schema: {type: string}}
steps:
  - {id: "001", task: fail_until, with: {value: $inputs.value, attempt: 0}}
  - {id: "002", task: add, with: {a: 1, b: 2}}
  - {id: "003", task: fail_until, with: {value: $001.value, attempt: 1}}
"""
FACES = """
inputs:
  image_path: {schema: {type: string}}
steps:
  - {id: "001", task: detect, with: {image_path: $inputs.image_path}}
  - id: "002"
    task: describe
    foreach: {port: faces_array, from: $001.faces_array, chunk: 1}
    with: {image_path: $inputs.image_path}
"""
HELD = """
inputs:
  gate1: {schema: {type: string}}
  gate2: {schema: {type: string}}
  gate3: {schema: {type: string}}
steps:
  - {id: "001", task: hold, with: {gate: $inputs.gate1}}
  - {id: "002", task: hold, with: {gate: $inputs.gate2, after: $001.held}}
  - {id: "003", task: hold, with: {gate: $inputs.gate3, after: $002.held}}
"""
"""Three steps in a chain, each running until its gate opens (see :meth:`Bench.open_gate`)."""


class Background:
    """A run on a thread of its own."""

    def __init__(self, target: Callable[[], RunSession]) -> None:
        self.session: RunSession | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, args=(target,), daemon=True)
        self.thread.start()

    def _main(self, target: Callable[[], RunSession]) -> None:
        try:
            self.session = target()
        except BaseException as exc:  # handed to join()
            self.error = exc

    def join(self, timeout: float = 60.0) -> RunSession:
        """Wait for the run's end; its session (its error raised if it raised one)."""
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"the run did not end within {timeout}s"
        if self.error is not None:
            raise self.error
        assert self.session is not None
        return self.session


@dataclass
class Bench:
    """A store with the test plugins installed, and a way to run pipelines into it."""

    home: Path
    services: Services
    folder: Path
    overrides: dict[str, Any]
    background: list[Background] = field(default_factory=list)

    def settings(self) -> Settings:
        return Settings.load({"home": str(self.home), **self.overrides})

    def open_services(self) -> Services:
        """What the dashboard is given: opens its own stores on the same home."""
        return Services.open(self.settings())

    def manifest(self, name: str, steps_yaml: str) -> Path:
        path = self.folder / "manifests" / f"{name}.yaml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(HEADER.format(name=name) + textwrap.dedent(steps_yaml))
        return path

    def run(self, name: str, steps_yaml: str, inputs: dict[str, Any] | None = None) -> RunSession:
        """Run a pipeline to the end on the thread pool."""
        checked, pins = prepare(self.services, self.manifest(name, steps_yaml))
        [session] = execute(self.services, checked, pins, [inputs or {}], workers=2, pool="thread")
        return session

    def run_in_background(
        self, name: str, steps_yaml: str, inputs: dict[str, Any] | None = None
    ) -> Background:
        """Start a run on a thread; join it to wait for its end."""
        run = Background(lambda: self.run(name, steps_yaml, inputs))
        self.background.append(run)
        return run

    def start_held(self) -> tuple[Background, str]:
        """Start :data:`HELD` in the background, its gates shut; the thread and the run ID."""
        before = self.run_ids()
        run = self.run_in_background("held", HELD, self.gates())
        wait_for(lambda: bool(self.run_ids() - before), what="the run to be recorded")
        [run_id] = self.run_ids() - before
        return run, run_id

    def gate(self, number: int) -> Path:
        """The file that lets :data:`HELD`'s step ``number`` end once it exists."""
        return self.folder / "gates" / f"gate{number}"

    def gates(self) -> dict[str, str]:
        """:data:`HELD`'s inputs: its three gates."""
        return {f"gate{n}": str(self.gate(n)) for n in (1, 2, 3)}

    def open_gate(self, number: int) -> None:
        path = self.gate(number)
        path.parent.mkdir(exist_ok=True)
        path.touch()

    def run_ids(self) -> set[str]:
        return {r.run_id for r in self.services.metadata.list_runs(limit=None)}

    def step_states(self, run_id: str) -> dict[str, str]:
        """Each step's recorded state (whole steps, not foreach chunks)."""
        return {
            s.step_id: s.status
            for s in self.services.metadata.list_steps(run_id)
            if s.item == NO_ITEM
        }


def make_bench(root: Path, **overrides: Any) -> Iterator[Bench]:
    home = root / "home"
    with Services.open(Settings.load({"home": str(home), **overrides})) as services:
        for folder in (*TEST_TASKS, HOLD):
            services.registry.install(folder)
        bench = Bench(home, services, root, overrides)
        try:
            yield bench
        finally:  # a test that failed half-way leaves no run going on into the next test
            for number in (1, 2, 3):
                bench.open_gate(number)
            for run in bench.background:
                run.thread.join(60)


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    """An empty store of its own (for tests that start runs)."""
    yield from make_bench(tmp_path)


@pytest.fixture
def small_inline_bench(tmp_path: Path) -> Iterator[Bench]:
    """An empty store that keeps values over 100 bytes by reference, not inline."""
    yield from make_bench(tmp_path, inline_threshold=100)


@dataclass
class Filled:
    """The shared store and the IDs of the runs in it."""

    bench: Bench
    diamond: str
    failing: str
    faces: str


@pytest.fixture(scope="session")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Filled]:
    """A store with a succeeded diamond, a failed run and a 40-face foreach run (read only)."""
    root = tmp_path_factory.mktemp("filled")
    for bench in make_bench(root):
        faces = root / "faces.txt"
        faces.write_text("face\n" * 40)
        diamond = bench.run("diamond", DIAMOND, {"x": 1}).run_id
        failing = bench.run("failing", FAILING, {"value": "v"}).run_id
        many = bench.run("faces", FACES, {"image_path": str(faces)}).run_id
        yield Filled(bench, diamond, failing, many)


def screen_text(app: App[Any]) -> str:
    """What the terminal shows, as plain text lines."""
    width, height = app.size
    console = Console(
        width=width,
        height=height,
        file=io.StringIO(),
        force_terminal=True,
        color_system="truecolor",
        record=True,
        legacy_windows=False,
        safe_box=False,
    )
    console.print(
        app.screen._compositor.render_update(
            full=True, screen_stack=app._background_screens, simplify=True
        )
    )
    return console.export_text()


def screen_words(app: App[Any]) -> str:
    """The screen's words in one line: what wrapped text (like notifications) says."""
    return " ".join(screen_text(app).replace("▌", " ").split())


def has_line(text: str, *parts: str) -> bool:
    """Whether one line of ``text`` holds every part, in order."""
    for line in text.splitlines():
        at = 0
        for part in parts:
            at = line.find(part, at)
            if at < 0:
                break
            at += len(part)
        else:
            return True
    return False


def wait_for(check: Callable[[], object], timeout: float = 30.0, what: str = "condition") -> None:
    """Wait until ``check()`` is true; fail after ``timeout`` seconds (generous: for loaded
    machines; a passing test never waits for it)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


async def until(
    pilot: Pilot[Any], check: Callable[[], object], timeout: float = 30.0, what: str = "condition"
) -> None:
    """Let the app run until ``check()`` is true; fail after ``timeout`` seconds.

    Then it lets the app finish handling what made ``check()`` true (a refresh relays the
    screen out), so what the test reads next is the settled screen.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            await pilot.pause()
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{screen_text(pilot.app)}")
