"""``wtm runs watch RUN_ID``: a live table until the run ends, and its exit codes."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from click.testing import CliRunner

from runtime.cli.dashboard import watch
from tests.tui.conftest import DIAMOND, FAILING, Bench, has_line, wait_for


def run_watch(bench: Bench, *args: str):
    runner = CliRunner()
    return runner.invoke(
        watch, [*args, "--interval", "0.1"], env={"WTM_HOME": str(bench.home), "COLUMNS": "120"}
    )


class Watching:
    """A ``wtm runs watch`` process, its output read line by line as it comes."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self.ended = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _take(self, timeout: float) -> None:
        """Read the next line if one comes within ``timeout`` seconds."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            return
        if line is None:
            self.ended = True
        else:
            self.seen.append(line)

    def wait_for_line(self, *parts: str, timeout: float = 60.0) -> str:
        """The first line holding every one of ``parts`` in order; waits for it to come."""
        deadline = time.monotonic() + timeout
        while True:
            found = next((line for line in self.seen if has_line(line, *parts)), None)
            if found is not None:
                return found
            if self.ended or time.monotonic() > deadline:
                raise AssertionError(f"no line with {parts} in:\n{self.output()}")
            self._take(0.1)

    def wait(self, timeout: float = 60.0) -> int:
        """The exit code, once the process ended and all its output is read."""
        code = self.process.wait(timeout)
        deadline = time.monotonic() + timeout
        while not self.ended and time.monotonic() < deadline:
            self._take(0.1)
        assert self.ended, "the output did not end with the process"
        return code

    def output(self) -> str:
        return "".join(self.seen)


@contextmanager
def watching(bench: Bench, run_id: str) -> Iterator[Watching]:
    """``wtm runs watch RUN_ID`` as a process of its own, as a user runs it."""
    env = {**os.environ, "WTM_HOME": str(bench.home), "COLUMNS": "120", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "runtime.cli", "runs", "watch", run_id, "--interval", "0.1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield Watching(process)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def test_succeeded_run_exits_0_with_its_table(bench: Bench) -> None:
    run_id = bench.run("diamond", DIAMOND, {"x": 1}).run_id
    result = run_watch(bench, run_id)
    assert result.exit_code == 0, result.output
    assert f"✔ succeeded  diamond@1.0.0  run {run_id}" in result.output
    for header in ("stage", "step", "task", "state", "try", "worker", "duration"):
        assert header in result.output
    assert result.output.count("✔ succeeded") == 5  # the run and its 4 steps
    assert "4/4 steps done" in result.output


def test_failed_run_exits_1_with_its_error(bench: Bench) -> None:
    run_id = bench.run("failing", FAILING, {"value": "v"}).run_id
    result = run_watch(bench, run_id, "--quiet")
    assert result.exit_code == 1, result.output
    assert "✘ failed" in result.output and "↷ skipped" in result.output
    assert "RuntimeError: planned failure on attempt 3" in result.output


def test_unknown_run_exits_2(bench: Bench) -> None:
    result = run_watch(bench, "no-such-run")
    assert result.exit_code == 2
    assert "no run 'no-such-run'" in result.output


def test_follows_a_live_run_to_its_end(bench: Bench) -> None:
    run, run_id = bench.start_held()
    with watching(bench, run_id) as watch_process:
        for number, sid in enumerate(("001", "002", "003"), start=1):
            # Each step holds until its gate opens: only once watch reported it running.
            watch_process.wait_for_line(sid, "hold", "● running on")
            bench.open_gate(number)
            watch_process.wait_for_line(sid, "hold", "✔ succeeded in")
        code = watch_process.wait()
    run.join()
    output = watch_process.output()
    assert code == 0, output
    assert f"✔ succeeded  held@1.0.0  run {run_id}" in output
    assert "3/3 steps done" in output
    for sid in ("001", "002", "003"):
        assert has_line(output, sid, "hold@1.0.0", "✔ succeeded"), output


def test_cancelled_run_exits_1(bench: Bench) -> None:
    run, run_id = bench.start_held()
    wait_for(lambda: bench.step_states(run_id).get("001") == "running", what="step 001")
    bench.services.metadata.update_run(run_id, status="cancelled")  # what `wtm runs cancel` does
    wait_for(
        lambda: bench.step_states(run_id).get("003") == "cancelled",
        what="the executor to stop the run",
    )
    bench.open_gate(1)
    run.join()
    result = run_watch(bench, run_id)
    assert result.exit_code == 1, result.output
    assert "⊘ cancelled" in result.output
