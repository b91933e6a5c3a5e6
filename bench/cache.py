"""The step cache: a batch of face images run again, against its first run.

The batch holds distinct images: the six samples, each in variants that differ by one
pixel, so every image is new to the cache. Each round clears the cache, runs the batch
(every step computed), then runs it again (every step served from the cache), and checks
both give the same faces. Local (a warm pool of 2 processes) and celery (``-c 2``), side
by side in one environment. Target: the re-run at least 20x faster than the first run.

Run: ``python -m bench cache``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from bench.common import result_row
from bench.faces import PIPELINE, PLUGINS, warm
from bench.overhead import environment, local_runs, succeeded
from runtime.execute import execute
from runtime.executors.session import RunSession
from runtime.samples import export_samples

TARGET = 20.0


def variants(samples: dict[str, Path], folder: Path, count: int) -> list[Path]:
    """``count`` distinct images: the samples in turn, pixel (0, 0) changed in each."""
    folder.mkdir(parents=True, exist_ok=True)
    names = sorted(samples)
    paths = []
    for index in range(count):
        name = names[index % len(names)]
        image = Image.open(samples[name]).convert("RGB")
        red, green, blue = image.getpixel((0, 0))  # type: ignore[misc]
        image.putpixel((0, 0), ((red + 1 + index // len(names)) % 256, green, blue))
        path = folder / f"{name}-{index}.png"
        image.save(path)
        paths.append(path)
    return paths


def faces(sessions: Sequence[RunSession]) -> list[Any]:
    return [s.result["faces"] if s.result else None for s in sessions]


def all_served(sessions: Sequence[RunSession]) -> bool:
    """Whether no step of ``sessions`` did any work (every call served from the cache)."""
    for session in sessions:
        summary = session.result["processing_summary"] if session.result else {}
        steps = summary.get("steps", {}).values()
        if summary.get("sequential_time") != 0 or any(
            s["cached"] != s["invocations"] for s in steps if s["status"] == "succeeded"
        ):
            return False
    return True


def run(images: int = 60, rounds: int = 3) -> list[dict[str, Any]]:
    started = time.perf_counter()
    rows = []
    with environment(PLUGINS, concurrency=2, name="cache") as env:
        services = env.services
        samples = export_samples(env.folder / "samples")
        paths = variants(samples, env.folder / "variants", images)
        checked, pins = env.pipeline_from(PIPELINE)

        def local(batch: list[Path], reuse: bool = True) -> list[RunSession]:
            runs = [{"image_path": str(p)} for p in batch]
            sessions = local_runs(env.local, services, checked, pins, runs, reuse=reuse)
            succeeded(sessions)
            return sessions

        def celery(batch: list[Path], reuse: bool = True) -> list[RunSession]:
            runs = [{"image_path": str(p)} for p in batch]
            sessions = execute(
                services, checked, pins, runs, executor="celery", broker_url=env.broker, reuse=reuse
            )
            succeeded(sessions)
            return sessions

        kinds: dict[str, Callable[..., list[RunSession]]] = {"local": local, "celery": celery}
        for kind, go in kinds.items():
            warm(lambda batch, go=go: go(batch, reuse=False), services, samples["group6"], 2)
            first: list[float] = []
            again: list[float] = []
            for _ in range(rounds):
                services.metadata.clear_cache()
                start = time.perf_counter()
                computed = go(paths)
                first.append(time.perf_counter() - start)
                start = time.perf_counter()
                served = go(paths)
                again.append(time.perf_counter() - start)
                assert faces(served) == faces(computed), "the cache changed a result"
                assert all_served(served), "a step of the re-run was computed"
            t_first, t_again = statistics.median(first), statistics.median(again)
            speedup = t_first / t_again
            rows.append(
                result_row(
                    "cache",
                    f"batch of {images} images run again (cached), {kind}",
                    "images/min",
                    "first run",
                    images * 60 / t_first,
                    "run again",
                    images * 60 / t_again,
                    target=f"ratio >= {TARGET:g}",
                    met=speedup >= TARGET,
                    samples_s={"first": first, "again": again},
                )
            )
    for row in rows:
        row["bench_seconds"] = round(time.perf_counter() - started, 1)
    return rows
