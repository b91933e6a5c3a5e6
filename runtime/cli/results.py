"""Render a run's result for people: outputs as tables where they are lists of records."""

from __future__ import annotations

import json
from typing import Any

from rich import box
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Column, Table
from rich.text import Text

MAX_ROWS = 50
HIDDEN = {
    "source",
    "landmark_model",
    "probabilities",
    "descriptor_metric",
    "descriptor_threshold",
}
ABBREVIATIONS = {
    "face_id": "face",
    "confidence": "conf",
    "descriptor": "descr",
    "descriptor_model": "model",
}


def _is_point(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int | float) for v in value)
    )


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        if "label" in value and "confidence" in value:
            return f"{value['label']} {value['confidence']:.2f}"
        if "years" in value:
            return f"{value['years']} {value.get('confidence', 0):.2f}"
        if "dominant" in value:
            return f"{value['dominant']} {value.get('confidence', 0):.2f}"
        if value and all(_is_point(v) for v in value.values()):
            return f"{len(value)} pts"  # named keypoints
        if value and all(isinstance(v, int | float) for v in value.values()):
            top = max(value, key=value.__getitem__)
            return f"{top} {value[top]:.2f}"
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items() if k != "source")
    if isinstance(value, list):
        if value and all(isinstance(v, list) for v in value):
            return f"{len(value)} pts"
        if len(value) > 8 and all(isinstance(v, int | float) for v in value):
            norm = sum(v * v for v in value) ** 0.5
            return f"{len(value)}-D |{norm:.2f}|"
        if len(value) > 8:
            return f"{len(value)} items"
        return ",".join(_cell(v) for v in value)
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def records_table(name: str, rows: list[dict[str, Any]]) -> Table:
    """A table of a list of records, one column per field, nested sections flattened."""
    columns: dict[str, None] = {}
    flat_rows = []
    for row in rows[:MAX_ROWS]:
        flat: dict[str, Any] = {}
        for key, value in row.items():
            if isinstance(value, dict) and "source" in value:
                for sub, v in value.items():
                    if sub not in HIDDEN:
                        flat[f"{key}.{sub}"] = v
            else:
                flat[key] = value
        flat_rows.append(flat)
        columns.update(dict.fromkeys(flat))
    short = [c.rpartition(".")[2] for c in columns]
    headers = [s if short.count(s) == 1 else c for s, c in zip(short, columns, strict=True)]
    headers = [ABBREVIATIONS.get(h, h) for h in headers]
    table = Table(
        *(Column(h, overflow="fold") for h in headers),
        title=f"{name} ({len(rows)})",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for flat in flat_rows:
        table.add_row(*(_cell(flat.get(c, "")) for c in columns))
    return table


def render_result(result: dict[str, Any], console: Console) -> None:
    """Print outputs (tables for lists of records) and the processing summary."""
    summary = result.get("processing_summary", {})
    for name, value in result.items():
        if name == "processing_summary":
            continue
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            console.print(records_table(name, value))
        else:
            text = json.dumps(value, indent=2, default=str)
            console.print(
                Panel(text if len(text) < 4000 else text[:4000] + "\n...", title=Text(name))
            )
    if not summary:
        return
    steps = Table("step", "task", "status", "calls", "seconds", title="steps", title_justify="left")
    served = 0
    for sid, step in summary.get("steps", {}).items():
        calls, cached = step.get("invocations", 1), step.get("cached", 0)
        served += cached
        steps.add_row(
            sid,
            step["task"],
            step["status"],
            f"{calls} ({cached} cached)" if cached else str(calls),
            f"{step.get('seconds', 0):.3f}",
        )
    head = Text.assemble(
        f"run {summary.get('run_id')}  {summary.get('pipeline')}  ",
        (str(summary.get("status")), "bold"),
        f"  total {summary.get('total_time', 0):.3f}s  "
        f"sequential {summary.get('sequential_time', 0):.3f}s  "
        f"speedup {summary.get('parallel_speedup', 0):.2f}x",
    )
    lineage = "\n".join(summary.get("data_lineage", []))
    parts: list[Any] = [head]
    if served:
        parts.append(
            f"{served} call{'s' if served > 1 else ''} served from the step cache "
            "(no work, 0 s; --no-cache runs every step)"
        )
    if summary.get("warm_time"):
        parts.append(
            f"plugins and models loaded in {summary['warm_time']:.3f}s before the first step "
            "(in each worker process, in parallel; not in the times above)"
        )
    console.print(Group(*parts, steps, Panel(lineage, title="data lineage", expand=False)))
    for failure in summary.get("errors", []):
        console.print(Text(str(failure), style="red"), soft_wrap=True)
