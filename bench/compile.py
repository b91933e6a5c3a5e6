"""Validate and compile a generated 1,000-step pipeline; baseline: parsing the same YAML.

Run: ``python -m bench.compile``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table
from ruamel.yaml import YAML

from bench.common import interleaved, save
from runtime.catalog import DirectoryCatalog
from runtime.manifest import load_pipeline
from runtime.validate import check_pipeline

TASKS = Path(__file__).parent.parent / "tests" / "fixtures" / "tasks"


def generated_pipeline(steps: int, width: int = 10) -> str:
    """One detect step, then layers of ``width`` describe steps each reading the one before."""
    lines = [
        "apiVersion: wtm/v1",
        "kind: Pipeline",
        "name: generated",
        "version: 1.0.0",
        "inputs:",
        "  image_path: {schema: {type: string}}",
        "steps:",
        '  - {id: "s0", task: detect@^1, with: {image_path: $inputs.image_path}}',
    ]
    for i in range(1, steps):
        parent = f"s{max(0, i - width)}" if i > width else "s0"
        port = "faces_array" if parent == "s0" else "described"
        lines.append(
            f'  - {{id: "s{i}", task: describe@^1, with: {{image_path: '
            f"$inputs.image_path, faces_array: ${parent}.{port}}}}}"
        )
    return "\n".join(lines) + "\n"


def run(steps: int = 1000) -> list[dict[str, object]]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.yaml"
        path.write_text(generated_pipeline(steps))
        catalog = DirectoryCatalog([TASKS])

        def validate_and_compile() -> object:
            return check_pipeline(load_pipeline(path), catalog).graph

        graph = validate_and_compile()
        times = interleaved(
            {
                "yaml parse only (baseline)": lambda: YAML(typ="safe").load(path.read_text()),
                "wtm load + validate + compile": validate_and_compile,
            }
        )
    base = times["yaml parse only (baseline)"]
    rows = [
        {"case": f"{name}, {steps} steps", "seconds": round(t, 4), "ratio": round(t / base, 2)}
        for name, t in times.items()
    ]
    rows[-1]["stages"] = len(graph.stages)  # type: ignore[attr-defined]
    return rows


def main() -> None:
    rows = run()
    table = Table("case", "median s", "x baseline", title="bench/compile")
    for row in rows:
        table.add_row(str(row["case"]), f"{row['seconds']:.4f}", f"{row['ratio']:.2f}")
    Console().print(table)
    save("compile", rows)


if __name__ == "__main__":
    main()
