"""Timing helpers shared by the benchmarks."""

from __future__ import annotations

import json
import os
import platform
import signal
import socket
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def interleaved(fns: dict[str, Callable[[], object]], repeat: int = 5) -> dict[str, float]:
    """Median times of several functions measured in alternation (fair on a noisy machine)."""
    return {name: statistics.median(t) for name, t in interleaved_raw(fns, repeat).items()}


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def busy_warning() -> str | None:
    """A warning when other processes keep the CPUs busy (the ratios would be noisy)."""
    load = os.getloadavg()[0]
    cpus = os.cpu_count() or 1
    if load < 0.5 * cpus:
        return None
    return (
        f"warning: load average {load:.2f} on {cpus} CPUs before starting: other processes "
        "are busy, figures will be noisy"
    )


def save(name: str, rows: list[dict[str, Any]], **extra: Any) -> Path:
    """Write results with machine info (and ``extra`` fields) to bench/results/NAME.json."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    document = {"machine": machine(), **extra, "rows": rows}
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def interleaved_raw(
    fns: dict[str, Callable[[], object]],
    repeat: int = 5,
    warmup: bool = True,
    slow: float | None = None,
) -> dict[str, list[float]]:
    """Like :func:`interleaved`, but every time (seconds) of each function; warm-up optional.
    A function whose last run took more than ``slow`` seconds is not run again."""
    if warmup:
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            if slow is not None and times[name] and times[name][-1] > slow:
                continue
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def result_row(
    bench: str,
    case: str,
    unit: str,
    baseline_name: str,
    baseline: float | None,
    wtm_name: str,
    wtm: float | None,
    *,
    target: str = "",
    met: bool | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One line of the summary table; ``ratio`` is always measured / baseline in ``unit``
    (for times above 1 means slower, for rates faster). The measured side is wtm, except
    in rows comparing two baselines (the ceiling of plain processes, the hand-written
    Celery app): ``wtm_name`` says what was measured."""
    ratio = wtm / baseline if baseline and wtm is not None else None
    return {
        "bench": bench,
        "case": case,
        "unit": unit,
        "baseline_name": baseline_name,
        "baseline": baseline,
        "wtm_name": wtm_name,
        "wtm": wtm,
        "ratio": None if ratio is None else round(ratio, 3),
        "target": target,
        "met": met,
        **extra,
    }


def figure(value: float | None) -> str:
    """``value`` with about three significant digits; ``-`` for None."""
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 0.1:
        return f"{value:.2f}"
    return f"{value:.4f}"


def print_table(rows: list[dict[str, Any]], title: str) -> None:
    """The one summary table: case, baseline, measured (wtm, or another baseline), ratio,
    target, met?"""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for column in ("case", "baseline", "measured", "ratio", "target", "met?"):
        table.add_column(column, overflow="fold")
    for row in rows:
        unit = row["unit"]
        met = row["met"]
        table.add_row(
            f"{row['bench']}: {row['case']}",
            f"{figure(row['baseline'])} {unit}  {row['baseline_name']}",
            f"{figure(row['wtm'])} {unit}  {row['wtm_name']}",
            "-" if row["ratio"] is None else f"{row['ratio']:.2f}x",
            row["target"] or "-",
            "-" if met is None else ("[green]yes[/]" if met else "[red]NO[/]"),
        )
    Console(width=200).print(table)


def start_wtm_worker(
    broker: str,
    env: dict[str, str],
    log: Path,
    concurrency: int,
    name: str,
    preload: tuple[str, ...] = ("bench.rawcelery",),
) -> Any:
    """The unchanged ``wtm worker`` command in a process that first imports ``preload``
    (raw Celery tasks registered on the same app and pool); returned once it answers a ping."""
    import subprocess
    import sys

    from runtime.executors.celery_app import make_app
    from tests.services import stop_worker

    code = "".join(f"import {m}; " for m in preload) + "from runtime.cli import main; main()"
    handle = open(log, "ab")  # noqa: SIM115 - owned by the process
    process = subprocess.Popen(
        [sys.executable, "-c", code, "worker", "-c", str(concurrency), "-n", f"{name}@%h"],
        env={**os.environ, **env, "WTM_BROKER_URL": broker},
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    app = make_app(broker)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"worker exited: {log.read_text()[-2000:]}")
            if app.control.ping(destination=[f"{name}@{socket.gethostname()}"], timeout=0.5):
                return process
        raise RuntimeError(f"worker did not answer: {log.read_text()[-2000:]}")
    except BaseException:  # a broker error while waiting too: never leave it running
        stop_worker(process, signal.SIGKILL)
        raise


def release_results(result: Any) -> None:
    """Stop following a finished raw Celery canvas's results (an ``AsyncResult``): the
    Redis backend keeps the chord members it was told to watch until then, and would
    otherwise unsubscribe them at garbage collection, when the broker may be gone (a
    reconnect loop in a ``__del__``). wtm's executor uses no Celery results; the raw
    and hand-written baselines do."""
    backend = result.backend
    pending = getattr(backend, "_pending_results", None)  # Redis backend: (concrete, weak)
    node: Any = result
    while node is not None:
        for member in [node, *(getattr(node, "results", None) or ())]:
            # the backend may hold other objects of the same task ID (a chord's own
            # GroupResult made when it was sent): release those too
            waiters = [] if pending is None else pending[0].get(member.id, {}).values()
            for waiter in [member, *waiters]:
                backend.remove_pending_result(waiter)
        node = node.parent
