"""What the dashboard does to runs: cancel one, re-run a failed one with the same inputs.

A re-run stores nothing new: the run record names its pipeline and version and
holds its inputs, so the manifest is looked up among ``manifests/*.yaml`` of
the working folder and ``wtm run`` is started on it as a separate process.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ruamel.yaml import YAML

from runtime.stores.metadata import ACTIVE_RUN_STATUSES, MetadataStore, RunRecord

RERUNNABLE = ("failed", "cancelled")
MAX_MANIFEST_BYTES = 1 << 20


class ActionError(Exception):
    """An action cannot be done; the message says why, in one line."""


def cancel_run(store: MetadataStore, run_id: str) -> RunRecord:
    """Mark an active run cancelled (its executor stops it); ActionError if it is not active."""
    run = store.get_run(run_id)
    if run is None:
        raise ActionError(f"no run {run_id}")
    if run.status not in ACTIVE_RUN_STATUSES:
        raise ActionError(f"run {run_id} is already {run.status}")
    return store.update_run(run_id, status="cancelled")


def _read_pipeline(path: Path) -> dict[str, Any] | None:
    """The top-level mapping of a YAML file if it is small and parses, else None."""
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            return None
        data = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
    except Exception:  # an unreadable or broken manifest is simply not the one we want
        return None
    return data if isinstance(data, dict) else None


def find_manifest(workdir: Path, name: str, version: str) -> Path | None:
    """``manifests/*.yaml`` (or ``.yml``) under ``workdir`` with Pipeline ``name``@``version``."""
    folder = workdir / "manifests"
    if not folder.is_dir():
        return None
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        data = _read_pipeline(path)
        if (
            data is not None
            and data.get("kind") == "Pipeline"
            and data.get("name") == name
            and str(data.get("version")) == version
        ):
            return path
    return None


def input_args(manifest: Path, inputs: Mapping[str, Any]) -> list[str]:
    """``--input k=v`` arguments giving ``inputs`` back to ``wtm run`` as it parses them.

    ``wtm run`` takes the text of string ports as is and JSON for other ports.
    """
    data = _read_pipeline(manifest) or {}
    ports = data.get("inputs") or {}
    args = []
    for name, value in inputs.items():
        port = ports.get(name) if isinstance(ports, dict) else None
        schema = port.get("schema", {}) if isinstance(port, dict) else {}
        is_text = isinstance(schema, dict) and schema.get("type") == "string"
        text = value if is_text and isinstance(value, str) else json.dumps(value)
        args += ["--input", f"{name}={text}"]
    return args


@dataclass
class RerunPlan:
    """The ``wtm run`` command that re-runs a run, and the folder it runs in."""

    run: RunRecord
    manifest: Path
    args: list[str]
    workdir: Path

    @property
    def argv(self) -> list[str]:
        """The command line, with this Python running the wtm CLI."""
        return [sys.executable, "-m", "runtime.cli", "run", str(self.manifest), *self.args]

    @property
    def shown(self) -> str:
        """The command as a person would type it."""
        try:
            where = str(self.manifest.relative_to(self.workdir))
        except ValueError:
            where = str(self.manifest)
        return shlex.join(["wtm", "run", where, *self.args])


def plan_rerun(run: RunRecord, workdir: Path) -> RerunPlan:
    """How to re-run ``run``; ActionError if it is not failed/cancelled or has no manifest."""
    if run.status not in RERUNNABLE:
        raise ActionError(f"run {run.run_id} is {run.status}: only failed or cancelled runs re-run")
    manifest = find_manifest(workdir, run.pipeline, run.pipeline_version)
    if manifest is None:
        raise ActionError(
            f"cannot re-run {run.run_id}: no manifests/*.yaml in {workdir} defines Pipeline "
            f"{run.pipeline}@{run.pipeline_version}; start the dashboard in the project folder"
        )
    return RerunPlan(run, manifest, input_args(manifest, run.inputs), workdir)


@dataclass
class Spawned:
    """A started re-run process; :meth:`outcome` says how it ended, once it has."""

    plan: RerunPlan
    process: subprocess.Popen[bytes]
    stderr: IO[bytes] = field(repr=False)

    def outcome(self) -> str | None:
        """None while running, else one line on how it ended."""
        code = self.process.poll()
        if code is None:
            return None
        self.stderr.seek(0)
        lines = self.stderr.read().decode(errors="replace").strip().splitlines()
        self.stderr.close()
        label = f"re-run of {self.plan.run.run_id}"
        if code == 0:
            return f"{label} succeeded"
        if code == 1:
            return f"{label} finished: the new run failed"
        return f"{label} could not start (exit {code}): {lines[-1] if lines else 'no output'}"


def spawn_rerun(plan: RerunPlan, env: Mapping[str, str] | None = None) -> Spawned:
    """Start ``wtm run`` for ``plan`` in its own session; its new run shows in the store."""
    stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by Spawned.outcome
    process = subprocess.Popen(
        plan.argv,
        cwd=plan.workdir,
        env=dict(env) if env is not None else dict(os.environ),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        start_new_session=True,
    )
    return Spawned(plan, process, stderr)
