"""The face pipeline: wtm against a plain sequential script calling the same plugin functions.

The baseline is one process with the models preloaded, calling ``detect_faces``,
``face_attributes`` and ``face_features`` (the functions the plugins' hooks call, each
reading the image file as the hooks do) and merging the faces by ``face_id``.

(a) latency on astronaut (1 face) and group6 (6 faces): median of warm runs, every model
    loaded in every worker process before timing; wtm local (a warm pool of 2 processes)
    and wtm celery (one ``wtm worker -c 2``); targets: one face within 10% of the script,
    six faces at least 1.7x faster.
(b) a batch of 204 images (the six samples repeated) in two interleaved rounds: images/min
    of the script, wtm local (2 processes), wtm celery with 1 and with 2 worker processes;
    target: 2 processes at least 1.8x the script.
(c) resident memory of the ``wtm worker -c 2`` process tree with all three plugins
    loaded, idle and under the batch (from /proc; see ``bench.memory``); target: every
    worker process under 400 MB.

Run: ``python -m bench faces``.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench import memory
from bench.common import interleaved_raw, result_row, start_wtm_worker
from bench.face_models import model_module
from bench.overhead import Env, environment, local_runs, succeeded
from runtime.execute import execute
from runtime.samples import export_samples

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = [ROOT / "plugins" / p for p in ("face_detection", "face_attributes", "face_features")]
PIPELINE = ROOT / "manifests" / "face_pipeline.yaml"
BATCH_ORDER = ("astronaut", "group6", "camera", "chelsea", "coffee", "rocket")
TASKS = {"face_detection", "face_attributes", "face_features"}


class Sequential:
    """The plain script: the plugin functions in one process, models loaded up front."""

    def __init__(self) -> None:
        self.detector = model_module("face_detection", "detector")
        self.attributes = model_module("face_attributes", "attributes")
        self.features = model_module("face_features", "features")
        self.detector.load_models()
        self.attributes.load_models()
        self.features.load_models()

    def __call__(self, path: Path) -> list[dict[str, Any]]:
        faces = self.detector.detect_faces(path)["faces_array"]
        attributes = self.attributes.face_attributes(path, faces)
        features = self.features.face_features(path, faces)
        merged: dict[int, dict[str, Any]] = {f["face_id"]: dict(f) for f in faces}
        for extra in (*attributes, *features):
            merged[extra["face_id"]].update(extra)
        return [merged[k] for k in sorted(merged)]


def faces_of(session: Any) -> int:
    return len(session.result["faces"])


def warm(
    run: Callable[[list[Path]], Sequence[Any]], services: Any, image: Path, processes: int
) -> int:
    """Run ``image`` until every worker process has run every face task (models loaded)."""
    for attempt in range(1, 9):
        sessions = run([image] * 4)
        seen: dict[str, set[str]] = {}
        for session in sessions:
            for step in services.metadata.list_steps(session.run_id):
                if step.worker and step.status == "succeeded":
                    seen.setdefault(step.worker, set()).add(step.task)
        if len(seen) >= processes and all(tasks >= TASKS for tasks in seen.values()):
            return attempt
    raise RuntimeError(f"workers not warm after 8 rounds: {seen}")


def run(latency_repeat: int = 9, batch: int = 204) -> list[dict[str, Any]]:
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    with ExitStack() as stack:
        env: Env = stack.enter_context(environment(PLUGINS, concurrency=2, name="faces2"))
        from tests.services import stop_worker

        broker1 = env.broker.rsplit("/", 1)[0] + "/1"  # its own queue: another Redis DB
        worker1 = start_wtm_worker(
            broker1,
            {"WTM_HOME": str(env.services.settings.home), "WTM_VISIBILITY_TIMEOUT": "600"},
            env.folder / "faces1.log",
            1,
            "faces1",
        )
        stack.callback(stop_worker, worker1)
        samples = export_samples(env.folder / "samples")
        checked, pins = env.pipeline_from(PIPELINE)
        sequential = Sequential()
        services = env.services

        def local(paths: list[Path]) -> Sequence[Any]:
            runs = [{"image_path": str(p)} for p in paths]
            sessions = local_runs(env.local, services, checked, pins, runs)
            succeeded(sessions)
            return sessions

        def celery(broker: str) -> Callable[[list[Path]], Sequence[Any]]:
            def go(paths: list[Path]) -> Sequence[Any]:
                runs = [{"image_path": str(p)} for p in paths]
                sessions = execute(
                    services, checked, pins, runs, executor="celery", broker_url=broker
                )
                succeeded(sessions)
                return sessions

            return go

        celery2, celery1 = celery(env.broker), celery(broker1)
        warmup = {
            "local": warm(local, services, samples["group6"], 2),
            "celery2": warm(celery2, services, samples["group6"], 2),
            "celery1": warm(celery1, services, samples["group6"], 1),
        }
        idle = memory.summary(env.worker.pid)

        # (a) latency
        for name, faces, repeat in (
            ("astronaut", 1, latency_repeat),
            ("group6", 6, max(3, latency_repeat - 2)),
        ):
            path = samples[name]
            assert len(sequential(path)) == faces
            assert faces_of(local([path])[0]) == faces == faces_of(celery2([path])[0])
            times = interleaved_raw(
                {
                    "script": lambda p=path: sequential(p),
                    "local": lambda p=path: local([p]),
                    "celery": lambda p=path: celery2([p]),
                },
                repeat,
            )
            ms = {k: statistics.median(v) * 1000 for k, v in times.items()}
            for kind, label in (("local", "wtm local, 2 proc"), ("celery", "wtm celery, -c 2")):
                ratio = ms[kind] / ms["script"]
                if faces == 1:
                    target, met = "ratio <= 1.10", ratio <= 1.10
                else:
                    target, met = "ratio <= 0.588 (>= 1.7x faster)", ratio <= 1 / 1.7
                rows.append(
                    result_row(
                        "faces",
                        f"latency {name} ({faces} face{'s' if faces > 1 else ''}), {kind}",
                        "ms",
                        "sequential script",
                        ms["script"],
                        label,
                        ms[kind],
                        target=target,
                        met=met,
                        speedup=round(ms["script"] / ms[kind], 3),
                        samples_s={k: [round(t, 4) for t in times[k]] for k in ("script", kind)},
                    )
                )

        # what one `wtm run` pays: execute() starts a new pool, which loads every model
        path = samples["astronaut"]
        start = time.perf_counter()
        succeeded(execute(services, checked, pins, [{"image_path": str(path)}], workers=2))
        cold = (time.perf_counter() - start) * 1000
        start = time.perf_counter()
        sequential(path)
        script = (time.perf_counter() - start) * 1000
        rows.append(
            result_row(
                "faces",
                "astronaut via execute(local): new pool, models load (info)",
                "ms",
                "sequential script (warm)",
                script,
                "one wtm run, cold",
                cold,
            )
        )

        # (b) batch, two interleaved rounds; (c) memory of the -c 2 worker under that load
        images = [samples[n] for n in itertools.islice(itertools.cycle(BATCH_ORDER), batch)]
        halves = [images[: batch // 2], images[batch // 2 :]]
        variants: dict[str, Callable[[list[Path]], object]] = {
            "script": lambda paths: [sequential(p) for p in paths],
            "local": local,
            "celery2": celery2,
            "celery1": celery1,
        }
        seconds = dict.fromkeys(variants, 0.0)
        sampler = memory.Sampler(env.worker.pid)
        for number, half in enumerate(halves):
            order = list(variants) if number == 0 else list(reversed(variants))
            for name in order:
                start = time.perf_counter()
                if name == "celery2":
                    with sampler.running():
                        variants[name](half)
                else:
                    variants[name](half)
                seconds[name] += time.perf_counter() - start
        per_min = {k: 60 * len(images) / v for k, v in seconds.items()}
        for kind, label in (
            ("local", "wtm local, 2 proc"),
            ("celery1", "wtm celery, -c 1"),
            ("celery2", "wtm celery, -c 2"),
        ):
            ratio = per_min[kind] / per_min["script"]
            rows.append(
                result_row(
                    "faces",
                    f"batch of {len(images)} images, {kind}",
                    "images/min",
                    "sequential script",
                    per_min["script"],
                    label,
                    per_min[kind],
                    target="" if kind == "celery1" else "ratio >= 1.8",
                    met=None if kind == "celery1" else ratio >= 1.8,
                    seconds={k: round(seconds[k], 2) for k in ("script", kind)},
                )
            )
        loaded = memory.summary(env.worker.pid)
    rows += memory_rows(idle, loaded, sampler)
    for row in rows:
        row["warmup_rounds"] = warmup
        row["bench_seconds"] = round(time.perf_counter() - started, 1)
    return rows


def memory_rows(
    idle: Mapping[str, Any], after: Mapping[str, Any], sampler: memory.Sampler
) -> list[dict[str, Any]]:
    """Largest worker process (pool child) idle, and its peak under load, against 400 MB;
    the parent and the tree sums are in the JSON."""
    peak = max(after["max_child_peak_mb"], sampler.max_child_rss)
    return [
        result_row(
            "faces",
            "worker process RSS, 3 plugins loaded, idle",
            "MB",
            "-",
            None,
            "largest pool child",
            idle["max_child_rss_mb"],
            target="< 400 MB",
            met=idle["max_child_rss_mb"] < 400,
            idle=dict(idle),
        ),
        result_row(
            "faces",
            "worker process RSS, peak under batch load",
            "MB",
            "-",
            None,
            "largest pool child (VmHWM)",
            peak,
            target="< 400 MB",
            met=peak < 400,
            after=dict(after),
            sampled_max_child_rss_mb=round(sampler.max_child_rss, 1),
            sampled_max_tree_rss_mb=round(sampler.max_sum_rss, 1),
            sampled_max_tree_pss_mb=round(sampler.max_sum_pss, 1),
        ),
        result_row(
            "faces",
            "worker tree (parent + 2 children) under load, info",
            "MB",
            "-",
            None,
            "sum of RSS (PSS in JSON)",
            round(sampler.max_sum_rss, 1),
            pss=round(sampler.max_sum_pss, 1),
        ),
    ]
