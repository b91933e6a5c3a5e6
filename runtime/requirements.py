"""Check that a task's declared requirements are installed, and install them on request."""

from __future__ import annotations

import importlib.metadata as metadata
import importlib.util
import shlex
import subprocess
import sys
from collections.abc import Iterable

from packaging.requirements import InvalidRequirement
from packaging.requirements import Requirement as PipRequirement

from runtime.manifest import Requirement


def missing(requirements: Iterable[Requirement]) -> list[tuple[Requirement, str]]:
    """Requirements not satisfied here, each with the reason."""
    problems: list[tuple[Requirement, str]] = []
    for req in requirements:
        try:
            parsed = PipRequirement(req.requirement)
        except InvalidRequirement as exc:
            problems.append((req, f"invalid requirement: {exc}"))
            continue
        if parsed.marker is not None and not parsed.marker.evaluate():
            continue
        try:
            version = metadata.version(parsed.name)
        except metadata.PackageNotFoundError:
            if req.module and importlib.util.find_spec(req.module) is not None:
                continue
            problems.append((req, "not installed"))
            continue
        if parsed.specifier and not parsed.specifier.contains(version, prereleases=True):
            problems.append((req, f"have {version}"))
    return problems


def pip_commands(requirements: Iterable[Requirement]) -> list[list[str]]:
    """The pip commands that install ``requirements`` (no-deps ones separately)."""
    reqs = list(requirements)
    normal = [r.requirement for r in reqs if not r.no_deps]
    no_deps = [r.requirement for r in reqs if r.no_deps]
    base = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check"]
    commands = []
    if normal:
        commands.append([*base, *normal])
    if no_deps:
        commands.append([*base, "--no-deps", *no_deps])
    return commands


def install_hint(requirements: Iterable[Requirement]) -> str:
    """A copy-pasteable command line for the missing requirements."""
    return " && ".join(shlex.join(["pip", *c[3:]]) for c in pip_commands(requirements))


def install(requirements: Iterable[Requirement]) -> None:
    """Install ``requirements`` with pip; raises CalledProcessError on failure."""
    for command in pip_commands(requirements):
        subprocess.run(command, check=True)
