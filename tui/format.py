"""How things look: statuses, times, durations, sizes and values, as rich text.

Pure functions over records; shared by the dashboard and ``wtm runs watch``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.pretty import Pretty
from rich.text import Text

from runtime.cli.results import records_table
from runtime.stores.metadata import NO_ITEM, RunRecord, StepRecord, ValueRecord

FINAL_STATUSES = frozenset({"succeeded", "failed", "skipped", "cancelled"})
GLYPH = {
    "pending": "○",
    "running": "●",
    "succeeded": "✔",
    "failed": "✘",
    "skipped": "↷",
    "cancelled": "⊘",
}
STYLE = {
    "pending": "dim",
    "running": "bold yellow",
    "succeeded": "green",
    "failed": "bold red",
    "skipped": "dim",
    "cancelled": "magenta",
}
MAX_PREVIEW = 60


def status_text(status: str) -> Text:
    """``✔ succeeded`` in the status's colour."""
    return Text(f"{GLYPH.get(status, '?')} {status}", style=STYLE.get(status, ""))


def step_status_text(step: StepRecord) -> Text:
    """A step execution's :func:`status_text`, marked ``cached`` when the step cache
    served it."""
    text = status_text(step.status)
    if step.cached_from:
        text.append(" cached", style="cyan")
    return text


def parse_time(stamp: str | None) -> datetime | None:
    """An ISO 8601 timestamp from a record, or None."""
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp)
    except ValueError:
        return None


def clock(stamp: str | None, now: datetime | None = None) -> str:
    """Local ``HH:MM:SS`` for today, else ``MM-DD HH:MM``; empty for no time."""
    when = parse_time(stamp)
    if when is None:
        return ""
    local = when.astimezone()
    today = (now or datetime.now(UTC)).astimezone().date()
    return local.strftime("%H:%M:%S") if local.date() == today else local.strftime("%m-%d %H:%M")


def duration(seconds: float | None) -> str:
    """``0.23s``, ``12.3s``, ``4m05s``, ``2h03m``; empty for None."""
    if seconds is None:
        return ""
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def elapsed(start: str | None, end: str | None, now: datetime | None = None) -> float | None:
    """Seconds from ``start`` to ``end`` (to now while unfinished); None if not started."""
    began = parse_time(start)
    if began is None:
        return None
    finished = parse_time(end) or now or datetime.now(UTC)
    return (finished - began).total_seconds()


def run_seconds(run: RunRecord, now: datetime | None = None) -> float | None:
    """How long a run took, or has been running."""
    return elapsed(run.started_at or run.created_at, run.finished_at, now)


def step_seconds(step: StepRecord, now: datetime | None = None) -> float | None:
    """How long a step took (its recorded seconds), or has been running."""
    if step.seconds is not None:
        return step.seconds
    if step.status == "running":
        return elapsed(step.started_at, None, now)
    return None


def size(nbytes: int) -> str:
    """``57 B``, ``2.7 KiB``, ``1.2 MiB``."""
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def short_digest(digest: str, length: int = 12) -> str:
    """The first hex digits of a digest, without any ``sha256:`` prefix."""
    return digest.partition(":")[2][:length] if ":" in digest else digest[:length]


def step_label(step_id: str, item: int) -> str:
    """``003`` for a whole step, ``003[4]`` for chunk 4 of a foreach."""
    return step_id if item == NO_ITEM else f"{step_id}[{item}]"


def inputs_line(inputs: dict[str, Any], limit: int = 200) -> str:
    """A run's inputs as ``k=v k=v``, cut at ``limit`` characters."""
    text = " ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in inputs.items())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def preview(value: Any, limit: int = MAX_PREVIEW) -> str:
    """One line saying what a value is: short JSON, or its shape when long."""
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        text = f"{len(value)} record{'s' if len(value) != 1 else ''}: " + ", ".join(
            list(value[0])[:6]
        )
    elif isinstance(value, list) and len(value) > 8:
        text = f"{len(value)} items: " + json.dumps(value[:4])[:-1] + ", …]"
    else:
        text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def value_preview(record: ValueRecord, limit: int = MAX_PREVIEW) -> str:
    """A value record in one line: its preview, or where it is stored when by reference."""
    if record.uri:
        return f"stored by reference ({size(record.size)})"
    return preview(record.value, limit)


def value_body(value: Any) -> RenderableType:
    """A value rendered for reading: a table for lists of records, else pretty-printed."""
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return records_table("records", value)
    if isinstance(value, str):
        return Text(value)
    return Pretty(value, max_length=24, max_string=400, max_depth=6)


def value_view(record: ValueRecord, loaded: Any = None, is_loaded: bool = False) -> RenderableType:
    """A value record in full: IDs, size, then the value (or its URI when by reference)."""
    origin = "pipeline input" if record.producer == "pipeline" else f"step {record.producer}"
    head = Text.assemble(
        (record.value_id, "bold cyan"),
        f"  {size(record.size)}  {origin}, port {record.port}\n",
        ("data ", "dim"),
        record.data_id,
    )
    if record.sources:
        head.append("\nfrom ", style="dim")
        head.append(", ".join(record.sources[:8]))
        if len(record.sources) > 8:
            head.append(f" … ({len(record.sources)} in all)", style="dim")
    if record.uri and not is_loaded:
        where = Text.assemble(
            ("\nstored by reference: ", "dim"),
            (record.uri, "underline"),
            f"  ({size(record.size)})\n",
            ("press v to load it", "dim"),
        )
        return Group(head, where)
    if record.uri:
        head.append(f"\nloaded from {record.uri}", style="dim")
    body = value_body(loaded if record.uri else record.value)
    return Group(head, Text(""), body)


def ago(seconds: float | None) -> str:
    """``3s ago``, ``4m ago``, ``2h ago``; ``-`` for never."""
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s ago"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m ago"
    return f"{seconds // 3600:.0f}h ago"
