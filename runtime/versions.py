"""Task references (``name@constraint``) and semantic-version resolution.

Constraints follow npm: ``^1``, ``~1.2``, ``>=1.0,<2`` (comma or space),
``1.2.3``, and ``latest`` (or none) for the newest release.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import semantic_version as sv


class ConstraintError(ValueError):
    """A version constraint that cannot be parsed."""


@dataclass(frozen=True)
class TaskRef:
    """A parsed ``name@constraint``."""

    name: str
    constraint: str = "latest"

    @classmethod
    def parse(cls, text: str) -> TaskRef:
        name, _, constraint = text.partition("@")
        ref = cls(name.strip(), constraint.strip() or "latest")
        ref.spec()
        return ref

    def spec(self) -> sv.NpmSpec:
        """The constraint as a matcher; raises :class:`ConstraintError`."""
        return parse_constraint(self.constraint)

    def __str__(self) -> str:
        return f"{self.name}@{self.constraint}"


def parse_constraint(text: str) -> sv.NpmSpec:
    """Parse an npm-style constraint; ``latest`` matches any release."""
    normalized = " ".join(text.replace(",", " ").split())
    if normalized in ("", "latest", "*"):
        normalized = "*"
    try:
        return sv.NpmSpec(normalized)
    except ValueError as exc:
        raise ConstraintError(f"invalid version constraint {text!r}: {exc}") from None


def is_version(text: str) -> bool:
    """True for a valid semantic version."""
    try:
        sv.Version(text)
    except ValueError:
        return False
    return True


def newest_matching(versions: Iterable[str], constraint: str) -> str | None:
    """The highest of ``versions`` that satisfies ``constraint``, or None."""
    spec = parse_constraint(constraint)
    candidates = [sv.Version(v) for v in versions if is_version(v)]
    best = spec.select(candidates)
    return str(best) if best is not None else None


def sort_versions(versions: Iterable[str]) -> list[str]:
    """Versions newest first."""
    return [str(v) for v in sorted((sv.Version(v) for v in versions), reverse=True)]
