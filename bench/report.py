"""``python -m bench.report``: the latest ``bench/results/bench.json`` as a Markdown table
(what the README's Performance section shows)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.common import RESULTS, figure


def markdown(document: dict[str, Any]) -> str:
    """One row per result: case, baseline, measured (wtm, or another baseline where the
    label says so), ratio (measured / baseline), target, met."""
    machine = document["machine"]
    measured = f"Measured {machine['when'][:10]} on {machine['cpus']} CPUs"
    measured += f", Python {machine['python']}"
    if "wall_seconds" in document:
        measured += f"; `python -m bench` took {document['wall_seconds']:.0f} s"
    if "load_before" in document:
        measured += f" (load average {document['load_before']:.2f} when it started)"
    lines = [
        measured + ".",
        "",
        "| case | baseline | measured | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for row in document["rows"]:
        unit = row["unit"]
        baseline = "-" if row["baseline"] is None else f"{figure(row['baseline'])} {unit}"
        if row["baseline"] is not None:
            baseline += f" ({row['baseline_name']})"
        wtm = f"{figure(row['wtm'])} {unit} ({row['wtm_name']})"
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:.2f}x"
        met = {True: "yes", False: "**no**", None: "-"}[row["met"]]
        target = row["target"] or "-"
        lines.append(
            f"| {row['bench']}: {row['case']} | {baseline} | {wtm} | {ratio} | {target} | {met} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS / "bench.json"
    sys.stdout.write(markdown(json.loads(path.read_text())))


if __name__ == "__main__":
    main()
