"""The face pipeline: wtm against a plain sequential script calling the same plugin functions.

The baseline is one process with the models preloaded, calling ``detect_faces``,
``face_attributes`` and ``face_features`` (the functions the plugins' hooks call, each
reading the image file as the hooks do) and merging the faces by ``face_id``.

(a) latency on astronaut (1 face) and group6 (6 faces): median of warm runs, every model
    loaded in every worker process before timing; wtm local (a warm pool of 2 processes)
    and wtm celery (one ``wtm worker -c 2``); targets: one face within 10% of the script,
    six faces at least 1.7x faster.
(b) a batch of 204 images (the six samples repeated) in four interleaved rounds of 51:
    images/min of the script, wtm local (2 processes), wtm celery with 1 and with 2
    worker processes (and with 2 on ``manifests/face_pipeline_batch.yaml``, no per-face
    fan-out); target: 2 processes at least 1.8x the script. Beside them, on the same
    images and rounds:

    - the *ceiling*: two independent plain processes, each running the script over half
      of each round's images (``bench.plainfaces.Ceiling``); every 2-process row is also
      given as a fraction of it; target: wtm local at least 0.90 of it;
    - *hand-written Celery*: a plain Celery app with one task per step calling the same
      plugin functions, ``detect | group(attributes, features) | merge`` per image, on
      ``celery worker -c 2`` (``bench.handcelery``); target: wtm celery -c 2 at least
      its images/min.
    - the *old models* (HOG detection, dlib descriptors, the defaults before issue 14):
      the plain script and wtm local on them; target: the new default in wtm local at
      least 3x the images/min of the old script. Each stage's share of a plain script's
      time per image is given for both.
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

from bench import handcelery, memory
from bench.common import interleaved_raw, result_row, start_wtm_worker
from bench.overhead import Env, environment, local_runs, succeeded
from bench.plainfaces import Ceiling, Sequential, split
from runtime.execute import execute
from runtime.samples import export_samples

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = [ROOT / "plugins" / p for p in ("face_detection", "face_attributes", "face_features")]
PIPELINE = ROOT / "manifests" / "face_pipeline.yaml"
BATCH_PIPELINE = ROOT / "manifests" / "face_pipeline_batch.yaml"
BATCH_ORDER = ("astronaut", "group6", "camera", "chelsea", "coffee", "rocket")
OLD_MODELS = {
    "detection": "HOG",
    "attributes": "age/gender ONNX, emotion tflite",
    "features": "dlib ResNet",
}
NEW_MODELS = {
    "detection": "BlazeFace",
    "attributes": "age/gender ONNX, emotion tflite",
    "features": "SFace",
}


def old_pipeline(folder: Path) -> Path:
    """The face pipeline on the previous default models: HOG detection, dlib descriptors."""
    text = PIPELINE.read_text()
    assert (
        "detector: blazeface" in text
        and "    with:\n      image_path: $inputs.image_path\noutputs" in text
    )
    text = text.replace("detector: blazeface", "detector: hog").replace(
        "    with:\n      image_path: $inputs.image_path\noutputs",
        "    with:\n      image_path: $inputs.image_path\n      descriptor: dlib\noutputs",
    )
    path = folder / "face_pipeline_old.yaml"
    path.write_text(text)
    return path


TASKS = {"face_detection", "face_attributes", "face_features"}


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
        old_checked, old_pins = env.pipeline_from(old_pipeline(env.folder))
        sequential, old_sequential = Sequential(), Sequential("hog", "dlib")
        services = env.services

        def local(paths: list[Path], checked: Any = checked, pins: Any = pins) -> Sequence[Any]:
            runs = [{"image_path": str(p)} for p in paths]
            sessions = local_runs(env.local, services, checked, pins, runs)
            succeeded(sessions)
            return sessions

        def local_old(paths: list[Path]) -> Sequence[Any]:
            return local(paths, old_checked, old_pins)

        def celery(
            broker: str, checked: Any = checked, pins: Any = pins
        ) -> Callable[[list[Path]], Sequence[Any]]:
            def go(paths: list[Path]) -> Sequence[Any]:
                runs = [{"image_path": str(p)} for p in paths]
                sessions = execute(
                    services, checked, pins, runs, executor="celery", broker_url=broker, reuse=False
                )
                succeeded(sessions)
                return sessions

            return go

        celery2, celery1 = celery(env.broker), celery(broker1)
        warmup = {
            "local": warm(local, services, samples["group6"], 2),
            "local_old": warm(local_old, services, samples["group6"], 2),
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
        inputs = [{"image_path": str(path)}]
        succeeded(execute(services, checked, pins, inputs, workers=2, reuse=False))
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

        # (b) batch, four interleaved rounds; (c) memory of the -c 2 worker under that load
        images = [samples[n] for n in itertools.islice(itertools.cycle(BATCH_ORDER), batch)]
        expected = {samples[n]: len(sequential(samples[n])) for n in BATCH_ORDER}
        old_expected = {samples[n]: len(old_sequential(samples[n])) for n in BATCH_ORDER}
        sequential.reset()
        old_sequential.reset()
        batch_checked, batch_pins = env.pipeline_from(BATCH_PIPELINE)
        hand = handcelery.start_worker(
            env.broker.rsplit("/", 1)[0] + "/2", env.folder / "hand.log", 2
        )
        stack.callback(stop_worker, hand)
        ceiling = stack.enter_context(Ceiling(samples["group6"], 2))
        for _ in range(2):  # every pool process has run every task
            handcelery.run_batch([samples["group6"]] * 4)
        celery2_nofan = celery(env.broker, batch_checked, batch_pins)
        celery2_nofan([samples["group6"]] * 4)
        sampler = memory.Sampler(env.worker.pid)
        rows += batch_rows(
            images,
            {"": expected, "_old": old_expected},  # HOG misses the cameraman's face
            {
                "script": lambda paths: sum(len(sequential(p)) for p in paths),
                "script_old": lambda paths: sum(len(old_sequential(p)) for p in paths),
                "local_old": lambda paths: sum(faces_of(s) for s in local_old(paths)),
                "ceiling": lambda paths: ceiling(paths)["faces"],
                "local": lambda paths: sum(faces_of(s) for s in local(paths)),
                "celery2": lambda paths: sum(faces_of(s) for s in celery2(paths)),
                "celery2_nofan": lambda paths: sum(faces_of(s) for s in celery2_nofan(paths)),
                "hand2": lambda paths: sum(len(f) for f in handcelery.run_batch(paths)),
                "celery1": lambda paths: sum(faces_of(s) for s in celery1(paths)),
            },
            sampler,
        )
        loaded = memory.summary(env.worker.pid)
        rows += model_share_rows(sequential, NEW_MODELS, "new models")
        rows += model_share_rows(old_sequential, OLD_MODELS, "old models (HOG + dlib)")
    rows += memory_rows(idle, loaded, sampler)
    for row in rows:
        row["warmup_rounds"] = warmup
        row["bench_seconds"] = round(time.perf_counter() - started, 1)
    return rows


def model_share_rows(
    script: Sequential, models: Mapping[str, str], label: str
) -> list[dict[str, Any]]:
    """Each stage's milliseconds per image in the plain script over the batch, as a
    share of the whole (the ratio column)."""
    per_image = script.per_image_ms()
    total = sum(per_image.values())
    return [
        result_row(
            "faces",
            f"time per image, {label}: {stage} ({models[stage]}) (info)",
            "ms/image",
            "whole sequential script",
            total,
            stage,
            ms,
        )
        for stage, ms in per_image.items()
    ]


BATCH_LABELS = {
    "script": "sequential script",
    "local": "wtm local, 2 proc",
    "local_old": "wtm local, 2 proc, old models (HOG + dlib)",
    "celery1": "wtm celery, -c 1",
    "celery2": "wtm celery, -c 2",
    "celery2_nofan": "wtm celery, -c 2, face_pipeline_batch",
    "hand2": "hand-written Celery, -c 2",
    "ceiling": "2 plain processes, half each",
}


def batch_rows(
    images: list[Path],
    expected: Mapping[str, Mapping[Path, int]],
    variants: Mapping[str, Callable[[list[Path]], int]],
    sampler: memory.Sampler,
    rounds: int = 4,
) -> list[dict[str, Any]]:
    """Images/min of every variant over ``images``, run in ``rounds`` consecutive slices
    (every variant runs each slice before the next; the order reverses every round, so
    drift in the machine's speed falls on all alike). Each variant returns the faces it
    found, checked against ``expected`` (by the suffix of its name: ``_old`` variants run
    the old models); the wtm -c 2 worker's memory is sampled while wtm celery -c 2 runs."""
    per_round: dict[str, list[float]] = {name: [] for name in variants}
    for number, part in enumerate(split(images, rounds)):
        order = list(variants) if number % 2 == 0 else list(reversed(variants))
        for name in order:
            faces = sum(expected["_old" if name.endswith("_old") else ""][p] for p in part)
            start = time.perf_counter()
            if name == "celery2":
                with sampler.running():
                    found = variants[name](part)
            else:
                found = variants[name](part)
            per_round[name].append(time.perf_counter() - start)
            if found != faces:
                raise RuntimeError(f"batch {name}: {found} faces, expected {faces}")
    seconds = {name: sum(times) for name, times in per_round.items()}
    per_min = {k: 60 * len(images) / v for k, v in seconds.items()}
    case = f"batch of {len(images)} images"
    base_labels = {
        "script": "sequential script",
        "script_old": "sequential script, old models (HOG + dlib)",
        "ceiling": "ceiling (2 plain processes)",
        "hand2": BATCH_LABELS["hand2"],
    }
    # (measured, baseline, case, minimum ratio or None): against the script (the rows
    # kept from before), then every 2-process variant as a fraction of the ceiling, then
    # wtm celery against hand-written Celery
    comparisons: list[tuple[str, str, str, float | None]] = [
        ("local", "script", f"{case}, local", 1.8),
        ("celery1", "script", f"{case}, celery1", None),
        ("celery2", "script", f"{case}, celery2", 1.8),
        ("celery2_nofan", "script", f"{case}, celery2, face_pipeline_batch (info)", None),
        ("hand2", "script", f"{case}, hand-written Celery -c 2 (info)", None),
        ("ceiling", "script", f"{case}, ceiling: 2 plain processes (info)", None),
    ]
    comparisons += [
        (kind, "ceiling", f"{case}: {BATCH_LABELS[kind]} vs ceiling", minimum)
        for kind, minimum in (
            ("local", 0.90),
            ("celery2", None),
            ("celery2_nofan", None),
            ("hand2", None),
        )
    ]
    comparisons += [
        (kind, "hand2", f"{case}: {BATCH_LABELS[kind]} vs hand-written Celery", minimum)
        for kind, minimum in (("celery2", 1.0), ("celery2_nofan", None))
    ]
    comparisons += [
        ("local", "script_old", f"{case}: new models in wtm local vs the old script", 3.0),
        ("celery2", "script_old", f"{case}: new models in wtm celery -c 2 vs the old script", None),
        ("script", "script_old", f"{case}: new script vs the old script (info)", None),
        (
            "local_old",
            "script_old",
            f"{case}, old models: wtm local vs the old script (info)",
            None,
        ),
    ]
    return [
        result_row(
            "faces",
            label,
            "images/min",
            base_labels[base],
            per_min[base],
            BATCH_LABELS[kind],
            per_min[kind],
            target="" if minimum is None else f"ratio >= {minimum:g}",
            met=None if minimum is None else per_min[kind] / per_min[base] >= minimum,
            seconds={k: round(seconds[k], 2) for k in (base, kind)},
            round_seconds={k: [round(t, 2) for t in per_round[k]] for k in (base, kind)},
        )
        for kind, base, label, minimum in comparisons
    ]


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
