"""wtm's own cost per step, on pipelines of no-op steps, against baselines run side by side.

- wtm local (a warm pool of 2 processes) against calling the same plugin function in a
  plain loop; target: under 1 ms a step.
- wtm celery against a hand-written raw Celery canvas of the same shape, on the same
  Redis and the same worker (``bench.rawcelery`` tasks registered in the ``wtm worker``
  process, one app configuration from ``make_app``); target: at most 1.2x.
- 2000 no-op items: one foreach step (chunk 1) against a raw Celery group of 2000;
  target: at least raw Celery's tasks/s. A variant taking over 20 s a run is timed once.
- Plugin install and load, cold and warm cache, against a plain import of the plugin.

Shapes: ``1 step``; ``3-diamond`` (a, then b and c reading a: ``a | chord([b, c], join)``);
``100 wide`` (100 independent steps: one chord); ``100 deep`` (a chain of 100).

Run: ``python -m bench overhead``.
"""

from __future__ import annotations

import importlib.util
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from celery import chain, chord, group

from bench.common import interleaved_raw, release_results, result_row
from runtime.config import Settings
from runtime.execute import execute, prepare
from runtime.executors.celery_app import make_app
from runtime.executors.local import LocalExecutor
from runtime.executors.session import RunSession
from runtime.services import Services

BENCH = Path(__file__).resolve().parent
NOOP = BENCH / "plugins" / "noop"
SHAPES = {"1 step": 1, "3-diamond": 3, "100 wide": 100, "100 deep": 100}
HEADER = "apiVersion: wtm/v1\nkind: Pipeline\nname: {name}\nversion: 1.0.0\n"


def pipeline_yaml(shape: str, chunk: int = 1) -> str:
    """The no-op pipeline of ``shape`` (or ``fanout``: one foreach step over $inputs.items,
    ``chunk`` items per task)."""
    lines = [HEADER.format(name="noop_" + shape.replace(" ", "_").replace("-", "_")), "steps:"]
    if shape == "fanout":
        lines[0] += "inputs:\n  items: {schema: {type: array}}\n"
        foreach = f"{{port: a, from: $inputs.items, chunk: {chunk}}}"
        lines.append(f"  - {{id: s1, task: noop@^1, foreach: {foreach}}}")
    elif shape == "1 step":
        lines.append("  - {id: s1, task: noop@^1}")
    elif shape == "3-diamond":
        lines.append("  - {id: s1, task: noop@^1}")
        lines += [f"  - {{id: s{i}, task: noop@^1, with: {{a: $s1.out}}}}" for i in (2, 3)]
    elif shape == "100 wide":
        lines += [f"  - {{id: s{i}, task: noop@^1}}" for i in range(1, 101)]
    elif shape == "100 deep":
        lines.append("  - {id: s1, task: noop@^1}")
        lines += [
            f"  - {{id: s{i}, task: noop@^1, with: {{a: $s{i - 1}.out}}}}" for i in range(2, 101)
        ]
    else:
        raise KeyError(shape)
    return "\n".join(lines) + "\n"


def noop_module() -> ModuleType:
    """The noop plugin's module, imported plainly (the plain-loop baseline calls its hook)."""
    spec = importlib.util.spec_from_file_location("bench_noop_plugin", NOOP / "plugin.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def plain_loop(shape: str, fn: Callable[..., dict[str, Any]]) -> Callable[[], object]:
    """The same hook called in a plain loop, data passed as the pipeline would."""

    def one() -> object:
        return fn({"a": [], "b": []}, None)

    def diamond() -> object:
        first = fn({"a": [], "b": []}, None)
        return [fn({"a": first["out"], "b": []}, None) for _ in range(2)]

    def wide() -> object:
        return [fn({"a": [], "b": []}, None) for _ in range(100)]

    def deep() -> object:
        out: list[Any] = []
        for _ in range(100):
            out = fn({"a": out, "b": []}, None)["out"]
        return out

    return {"1 step": one, "3-diamond": diamond, "100 wide": wide, "100 deep": deep}[shape]


def raw_canvas(app: Any, shape: str) -> Any:
    """The hand-written Celery canvas of ``shape`` (tasks of ``bench.rawcelery``)."""

    def noop(*args: Any) -> Any:
        return app.signature("raw.noop", args=args)

    join = app.signature("raw.join")
    if shape == "1 step":
        return noop([])
    if shape == "3-diamond":
        return chain(noop([]), chord([noop(), noop()], join))
    if shape == "100 wide":
        return chord([noop([]) for _ in range(100)], join)
    if shape == "100 deep":
        return chain(noop([]), *[noop() for _ in range(99)])
    raise KeyError(shape)


def local_runs(
    executor: LocalExecutor,
    services: Services,
    checked: Any,
    pins: Mapping[str, Any],
    runs: Sequence[Mapping[str, Any]],
    reuse: bool = False,
) -> list[RunSession]:
    """What :func:`runtime.execute.execute` does for ``local``, on a pool kept warm between
    calls (``execute`` starts a new pool each call). Nothing is served from the step cache
    unless ``reuse``: the benchmarks measure work."""
    sessions = [
        RunSession.create(services, checked.graph, pins, r, "local", reuse=reuse) for r in runs
    ]
    executor.run(sessions)
    return sessions


def succeeded(sessions: Sequence[RunSession]) -> None:
    for session in sessions:
        assert session.result is not None
        summary = session.result["processing_summary"]
        if summary["status"] != "succeeded":
            raise RuntimeError(
                f"run {summary['run_id']} {summary['status']}: {summary.get('errors')}"
            )


@dataclass
class Env:
    """Stores with the bench plugins installed, a private Redis and a warm worker."""

    services: Services
    folder: Path
    broker: str
    worker: Any
    app: Any
    local: LocalExecutor

    def pipeline(self, shape: str, chunk: int = 1) -> tuple[Any, Any]:
        path = self.folder / f"{shape.replace(' ', '_')}_{chunk}.yaml"
        path.write_text(pipeline_yaml(shape, chunk))
        return prepare(self.services, path)

    def pipeline_from(self, path: Path) -> tuple[Any, Any]:
        return prepare(self.services, path)


@contextmanager
def environment(
    plugins: Sequence[Path] = (NOOP,), concurrency: int = 2, name: str = "bench"
) -> Iterator[Env]:
    """A temporary WTM_HOME with ``plugins`` installed, redis-server, one worker, a local pool."""
    from bench.common import start_wtm_worker
    from tests.services import redis_server, stop_worker

    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="wtm-bench-")))
        home = folder / "home"
        services = stack.enter_context(Services.open(Settings.load({"home": str(home)})))
        for plugin in plugins:
            services.registry.install(plugin)
        broker = stack.enter_context(redis_server(folder))
        env = {"WTM_HOME": str(home), "WTM_VISIBILITY_TIMEOUT": "600"}
        worker = start_wtm_worker(broker, env, folder / f"{name}.log", concurrency, name)
        stack.callback(stop_worker, worker)
        local = stack.enter_context(LocalExecutor(services, 2))
        yield Env(services, folder, broker, worker, make_app(broker), local)


def shape_times(env: Env, shape: str, repeat: int) -> dict[str, list[float]]:
    """Seconds per run: plain loop and wtm local, then raw Celery and wtm celery, each
    pair alternating."""
    checked, pins = env.pipeline(shape)
    fn = noop_module().wtm_task_run

    def wtm_celery() -> None:
        sessions = execute(
            env.services, checked, pins, [{}], executor="celery", broker_url=env.broker
        )
        succeeded(sessions)

    def wtm_local() -> None:
        succeeded(local_runs(env.local, env.services, checked, pins, [{}]))

    def raw_celery() -> None:
        # a fresh canvas each time: a reused one keeps its frozen task ids, and
        # .get() would return the previous run's stored result at once
        result = raw_canvas(env.app, shape).apply_async()
        result.get(timeout=120)
        release_results(result)  # as wtm does: nothing left for the garbage collector

    times = interleaved_raw({"plain": plain_loop(shape, fn), "local": wtm_local}, repeat)
    return times | interleaved_raw({"raw": raw_celery, "celery": wtm_celery}, repeat)


def shape_rows(env: Env, repeat: int) -> list[dict[str, Any]]:
    rows = []
    for shape, steps in SHAPES.items():
        times = shape_times(env, shape, repeat if steps < 100 else max(3, repeat // 2))
        ms = {k: statistics.median(v) * 1000 / steps for k, v in times.items()}
        rows.append(
            result_row(
                "overhead",
                f"{shape}: wtm local vs plain loop",
                "ms/step",
                "plain loop",
                ms["plain"],
                "wtm local, 2 proc",
                ms["local"],
                target="< 1 ms/step",
                met=ms["local"] < 1.0,
                steps=steps,
                samples_s={k: [round(t, 5) for t in v] for k, v in times.items()},
            )
        )
        ratio = ms["celery"] / ms["raw"]
        rows.append(
            result_row(
                "overhead",
                f"{shape}: wtm celery vs raw Celery",
                "ms/step",
                "raw Celery canvas",
                ms["raw"],
                "wtm celery",
                ms["celery"],
                target="ratio <= 1.2",
                met=ratio <= 1.2,
                steps=steps,
            )
        )
    return rows


def cold_local_row(env: Env, repeat: int = 3) -> dict[str, Any]:
    """``execute(executor="local")`` as ``wtm run`` calls it: a new process pool per call."""
    checked, pins = env.pipeline("1 step")
    fn = noop_module().wtm_task_run
    times = interleaved_raw(
        {
            "plain": plain_loop("1 step", fn),
            "execute": lambda: succeeded(
                execute(env.services, checked, pins, [{}], executor="local", workers=2)
            ),
        },
        repeat=repeat,
        warmup=False,
    )
    ms = {k: statistics.median(v) * 1000 for k, v in times.items()}
    return result_row(
        "overhead",
        "1 step: execute(local), new pool per call (info)",
        "ms/run",
        "plain call",
        ms["plain"],
        "wtm run path",
        ms["execute"],
    )


def fanout_rows(env: Env, items: int, repeat: int, batched_chunk: int = 50) -> list[dict[str, Any]]:
    """``items`` no-op items: a raw group of one task each, against a foreach step of one
    item a task (the same messages) and one of ``batched_chunk`` items a task (fewer,
    larger messages: publishing is what limits a fan-out)."""
    values = list(range(items))

    def wtm_celery(chunk: int) -> Callable[[], None]:
        checked, pins = env.pipeline("fanout", chunk)

        def run() -> None:
            [session] = execute(
                env.services,
                checked,
                pins,
                [{"items": values}],
                executor="celery",
                broker_url=env.broker,
            )
            succeeded([session])
            assert session.result is not None
            summary = session.result["processing_summary"]
            assert summary["steps"]["s1"]["invocations"] == -(-items // chunk)

        return run

    def raw_celery() -> None:
        raw = group(env.app.signature("raw.noop", args=([i],)) for i in values)
        result = raw.apply_async()
        assert len(result.get(timeout=600)) == items
        release_results(result)

    times = interleaved_raw(
        {"raw": raw_celery, "chunk1": wtm_celery(1), "batched": wtm_celery(batched_chunk)},
        repeat,
        warmup=False,
        slow=20.0,  # a variant taking longer than this a run is measured once
    )
    rate = {k: items / statistics.median(v) for k, v in times.items()}
    samples = {k: [round(t, 3) for t in v] for k, v in times.items()}
    return [
        result_row(
            "overhead",
            f"{items} no-op fan-out: foreach chunk 1 vs raw group",
            "items/s",
            "raw Celery group",
            rate["raw"],
            "wtm celery foreach",
            rate["chunk1"],
            target="ratio >= 1.0",
            met=rate["chunk1"] >= rate["raw"],
            samples_s=samples,
        ),
        result_row(
            "overhead",
            f"{items} no-op fan-out: foreach chunk {batched_chunk} vs raw group",
            "items/s",
            "raw Celery group",
            rate["raw"],
            f"wtm celery chunk {batched_chunk}",
            rate["batched"],
            target="ratio >= 1.0",
            met=rate["batched"] >= rate["raw"],
        ),
    ]


def plugin_load_rows(repeat: int = 5) -> list[dict[str, Any]]:
    """Install + load on a fresh home and cache (cold), the same Loader again (warm), against
    a plain import of the plugin module from its folder."""
    from runtime.loader import forget_plugin

    counter = iter(range(1_000_000))

    def plain_import() -> object:
        name = f"bench_plain_noop_{next(counter)}"
        spec = importlib.util.spec_from_file_location(name, NOOP / "plugin.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    with tempfile.TemporaryDirectory(prefix="wtm-bench-load-") as tmp:
        state: dict[str, Any] = {}

        def cold() -> object:
            home = Path(tmp) / f"home{next(counter)}"
            with Services.open(Settings.load({"home": str(home)})) as services:
                digest = services.registry.install(NOOP).record.digest
                forget_plugin(f"p{digest[:24]}")  # as in a fresh worker process
                state["loader"], state["digest"] = services.loader, digest
                return services.loader.load(digest)

        def warm() -> object:
            return state["loader"].load(state["digest"])

        cold()
        times = interleaved_raw(
            {"plain": plain_import, "cold": cold, "warm": warm}, repeat, warmup=False
        )
    ms = {k: statistics.median(v) * 1000 for k, v in times.items()}
    return [
        result_row(
            "compile",
            "noop plugin: Registry.install + Loader.load, fresh home and cache",
            "ms",
            "plain import",
            ms["plain"],
            "wtm cold",
            ms["cold"],
        ),
        result_row(
            "compile",
            "noop plugin: Loader.load again (warm cache)",
            "ms",
            "plain import",
            ms["plain"],
            "wtm warm",
            ms["warm"],
        ),
    ]


def run(repeat: int = 7, fanout: int = 2000, fanout_repeat: int = 3) -> list[dict[str, Any]]:
    started = time.perf_counter()
    with environment() as env:
        rows = shape_rows(env, repeat)
        rows += fanout_rows(env, fanout, fanout_repeat)
        rows.append(cold_local_row(env))
    for row in rows:
        row["bench_seconds"] = round(time.perf_counter() - started, 1)
    return rows
