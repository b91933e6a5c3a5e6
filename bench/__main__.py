"""``python -m bench [overhead] [faces] [cache] [compile]``: run the benchmarks (all by default).

Prints one table (case, baseline, measured, ratio, target, met?) and writes JSON
with machine info to bench/results/: one file per benchmark and ``bench.json``
with every row and the wall time. Every ratio is measured / baseline, both
measured side by side in the same run; the measured side is wtm except in the
rows that compare two baselines (the ceiling of plain processes, the hand-written
Celery app: the label says which).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

from bench.common import busy_warning, print_table, result_row, save


def compile_rows() -> list[dict[str, Any]]:
    """bench/compile (validate + compile 1,000 steps) and plugin install + load."""
    from bench import compile as compile_bench
    from bench.overhead import plugin_load_rows

    raw = compile_bench.run()
    save("compile", raw)  # the format bench/compile.py writes
    base, wtm = raw[0], raw[-1]
    rows = [
        result_row(
            "compile",
            "validate + compile 1000 steps",
            "s",
            "YAML parse only",
            base["seconds"],
            "wtm load + validate + compile",
            wtm["seconds"],
        )
    ]
    load = plugin_load_rows()
    save("plugin_load", load)
    return rows + load


def overhead_rows() -> list[dict[str, Any]]:
    from bench import overhead

    rows = overhead.run()
    save("overhead", rows)
    return rows


def faces_rows() -> list[dict[str, Any]]:
    from bench import faces

    rows = faces.run()
    save("faces", rows)
    return rows


def cache_rows() -> list[dict[str, Any]]:
    from bench import cache

    rows = cache.run()
    save("cache", rows)
    return rows


BENCHES: dict[str, Callable[[], list[dict[str, Any]]]] = {
    "overhead": overhead_rows,
    "faces": faces_rows,
    "cache": cache_rows,
    "compile": compile_rows,
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("bench", nargs="*", help="default: all")
    chosen = parser.parse_args().bench or list(BENCHES)
    unknown = [name for name in chosen if name not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHES)}")
    load_before = round(os.getloadavg()[0], 2)
    warning = busy_warning()
    if warning:
        print(warning, flush=True)
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    seconds: dict[str, float] = {}
    for name in chosen:
        begin = time.perf_counter()
        rows += BENCHES[name]()
        seconds[name] = round(time.perf_counter() - begin, 1)
    wall = round(time.perf_counter() - started, 1)
    print_table(rows, f"python -m bench {' '.join(chosen)}  ({wall:.0f} s)")
    path = save(
        "bench",
        rows,
        benches=chosen,
        wall_seconds=wall,
        bench_seconds=seconds,
        load_before=load_before,
    )
    print(f"wrote {path} (and one file per benchmark); wall time {wall:.0f} s")


if __name__ == "__main__":
    main()
