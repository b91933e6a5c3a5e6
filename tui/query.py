"""The runs list's filter: a status choice and free-text search."""

from __future__ import annotations

from dataclasses import dataclass

from runtime.stores.metadata import ACTIVE_RUN_STATUSES, RUN_STATUSES, RunRecord
from tui.format import inputs_line

STATUS_CHOICES = ("all", "active", *RUN_STATUSES)
"""What ``s`` cycles through: every run, pending or running ones, or one status."""


@dataclass(frozen=True)
class RunFilter:
    """Which runs the list shows. ``text`` words must all appear (case-insensitive)."""

    status: str = "all"
    text: str = ""

    @property
    def words(self) -> list[str]:
        return self.text.lower().split()

    @property
    def active(self) -> bool:
        """Whether it filters anything out."""
        return self.status != "all" or bool(self.words)

    def next_status(self) -> RunFilter:
        """The filter with the next status choice."""
        index = STATUS_CHOICES.index(self.status)
        return RunFilter(STATUS_CHOICES[(index + 1) % len(STATUS_CHOICES)], self.text)

    def matches(self, run: RunRecord) -> bool:
        """Whether ``run`` passes: status, then every word somewhere in its fields."""
        if self.status == "active" and run.status not in ACTIVE_RUN_STATUSES:
            return False
        if self.status not in ("all", "active") and run.status != self.status:
            return False
        words = self.words
        if not words:
            return True
        haystack = " ".join(
            [
                run.run_id,
                f"{run.pipeline}@{run.pipeline_version}",
                run.status,
                run.executor,
                run.error or "",
                run.batch_id or "",
                inputs_line(run.inputs, limit=10_000),
            ]
        ).lower()
        return all(word in haystack for word in words)

    def describe(self) -> str:
        """``status=failed search="faces"``, or ``all runs``."""
        parts = [] if self.status == "all" else [f"status={self.status}"]
        if self.words:
            parts.append(f"search={self.text.strip()!r}")
        return " ".join(parts) or "all runs"
