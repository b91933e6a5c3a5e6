"""Fixtures of the dashboard tests: a real store filled by real runs of the test plugins."""

from __future__ import annotations

import io
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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
from tests.conftest import TASKS

TEST_TASKS = ["add", "fail_until", "sleep", "detect", "describe"]
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
SLOW = """
steps:
  - {id: "001", task: sleep, with: {seconds: 0.6}}
  - {id: "002", task: sleep, with: {seconds: 0.6, after: $001.slept}}
  - {id: "003", task: sleep, with: {seconds: 0.6, after: $002.slept}}
"""


@dataclass
class Bench:
    """A store with the test plugins installed, and a way to run pipelines into it."""

    home: Path
    services: Services
    folder: Path
    overrides: dict[str, Any]

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
    ) -> threading.Thread:
        """Start a run on a thread; join the thread to wait for its end."""
        thread = threading.Thread(target=self.run, args=(name, steps_yaml, inputs), daemon=True)
        thread.start()
        return thread

    def run_ids(self) -> set[str]:
        return {r.run_id for r in self.services.metadata.list_runs(limit=None)}


def make_bench(root: Path, **overrides: Any) -> Iterator[Bench]:
    home = root / "home"
    with Services.open(Settings.load({"home": str(home), **overrides})) as services:
        for name in TEST_TASKS:
            services.registry.install(TASKS / name)
        yield Bench(home, services, root, overrides)


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


async def until(
    pilot: Pilot[Any], check: Callable[[], object], timeout: float = 10.0, what: str = "condition"
) -> None:
    """Let the app run until ``check()`` is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{screen_text(pilot.app)}")
