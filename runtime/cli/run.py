"""``wtm run``: one run, or a batch of runs, of a pipeline."""

from __future__ import annotations

import glob
import json
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from types import FrameType
from typing import Any

import click
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from runtime.catalog import DirectoryCatalog, search_path
from runtime.cli.common import open_services
from runtime.cli.output import console, errors, fail, print_json
from runtime.cli.results import render_result
from runtime.config import ConfigError
from runtime.execute import execute, prepare
from runtime.executors.base import EXECUTORS, Interrupted
from runtime.executors.calls import TaskPin
from runtime.executors.session import RunSession, new_run_id
from runtime.manifest import PipelineManifest
from runtime.problems import ManifestError
from runtime.services import Services
from runtime.validate import CheckedPipeline

EXIT_FAILED_RUN = 1


@contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """SIGTERM (a service manager, ``kill``) stops a run like Ctrl-C does, with the reason
    recorded, instead of killing the process with the run left ``running``."""

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise Interrupted("cancelled: wtm run received SIGTERM")

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def parse_inputs(pipeline: PipelineManifest, pairs: tuple[str, ...]) -> dict[str, Any]:
    """``--input k=v`` pairs as values: strings for string ports, JSON otherwise."""
    values: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep:
            fail(f"--input {pair!r}: write NAME=VALUE")
        port = pipeline.inputs.get(name)
        if port is None:
            fail(
                f"--input {name!r}: the pipeline has no input {name!r} "
                f"(inputs: {', '.join(pipeline.inputs) or 'none'})"
            )
        values[name] = raw if port.schema.get("type") == "string" else _json(name, raw)
    return values


def _json(name: str, raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        fail(f"--input {name}: {raw!r} is not a JSON value")


def complete_inputs(pipeline: PipelineManifest, values: dict[str, Any]) -> dict[str, Any]:
    """Defaults filled in and file paths made absolute; exit 2 on a missing input."""
    full = dict(values)
    for name, port in pipeline.inputs.items():
        if name not in full and port.has_default:
            full[name] = port.default
        elif name not in full and port.required:
            fail(f"missing input {name!r}: pass --input {name}=VALUE")
    for name, value in full.items():
        if isinstance(value, str) and Path(value).is_file():
            full[name] = str(Path(value).resolve())
    return full


def check_for_run(path: str, services: Services) -> tuple[CheckedPipeline, dict[str, TaskPin]]:
    """Load and check a pipeline against the installed plugins, or exit 2."""
    try:
        return prepare(services, path)
    except ManifestError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        _hint_uninstalled(exc, path)
        sys.exit(2)


def _hint_uninstalled(exc: ManifestError, path: str) -> None:
    local = DirectoryCatalog(search_path([path]))
    for problem in exc.problems:
        if "unknown task" in problem.message:
            name = problem.message.split("'")[1]
            for task in local.versions(name).values():
                folder = Path(task.source.path).parent
                errors.print(f"hint: install it with: wtm plugin install {folder}", soft_wrap=True)
                break


def batch_inputs(
    pipeline: PipelineManifest, spec: str, fixed: dict[str, Any], batch_input: str | None
) -> Iterator[dict[str, Any]]:
    """Inputs of each run of a batch: a JSON-lines file, or files matching a glob."""
    if spec.endswith((".jsonl", ".ndjson")) and Path(spec).is_file():
        with open(spec) as handle:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    try:
                        yield {**fixed, **json.loads(line)}
                    except json.JSONDecodeError as exc:
                        fail(f"{spec}:{number}: not JSON: {exc.msg}")
        return
    name = batch_input or _single_input(pipeline, fixed)
    files = sorted(glob.glob(spec, recursive=True))
    if not files:
        fail(f"--batch {spec!r}: no files match")
    for file in files:
        yield {**fixed, name: file}


def _single_input(pipeline: PipelineManifest, fixed: dict[str, Any]) -> str:
    open_inputs = [n for n, p in pipeline.inputs.items() if p.required and n not in fixed]
    if len(open_inputs) != 1:
        fail(
            "--batch with a glob needs --batch-input NAME (the pipeline has inputs "
            f"{', '.join(open_inputs) or 'none'} to fill)"
        )
    return open_inputs[0]


@click.command()
@click.argument("pipeline", type=click.Path())
@click.option(
    "--input",
    "-i",
    "pairs",
    multiple=True,
    metavar="NAME=VALUE",
    help="A pipeline input (repeatable).",
)
@click.option(
    "--batch",
    metavar="GLOB|FILE.jsonl",
    help="One run per matching file, or per line of a JSON-lines file of inputs.",
)
@click.option("--batch-input", metavar="NAME", help="The input each batch file goes to.")
@click.option(
    "--executor", type=click.Choice(sorted(EXECUTORS)), default="local", show_default=True
)
@click.option("--broker", help="Redis URL for --executor celery [WTM_BROKER_URL].")
@click.option("--workers", type=click.IntRange(1, 256), help="Local worker processes [CPUs].")
@click.option(
    "--pool",
    type=click.Choice(["process", "thread"]),
    default="process",
    show_default=True,
    help="Local pool kind (threads only for GIL-free plugins).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Celery: cancel the runs still unfinished after this long [wait for them].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON only.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write the result JSON.")
def run(
    pipeline: str,
    pairs: tuple[str, ...],
    batch: str | None,
    batch_input: str | None,
    executor: str,
    broker: str | None,
    workers: int | None,
    pool: str,
    timeout: float | None,
    as_json: bool,
    output: str | None,
) -> None:
    """Run a pipeline; exit 0 if it succeeded, 1 if it failed, 2 on bad input."""
    with open_services() as services:
        checked, pins = check_for_run(pipeline, services)
        manifest = checked.pipeline
        fixed = parse_inputs(manifest, pairs)
        if batch:
            runs = [
                complete_inputs(manifest, i)
                for i in batch_inputs(manifest, batch, fixed, batch_input)
            ]
        else:
            runs = [complete_inputs(manifest, fixed)]
        batch_id = new_run_id() if batch else None
        progress = BatchProgress(len(runs), quiet=as_json) if batch else None
        try:
            with progress or nullcontext(), stop_on_sigterm():
                sessions = execute(
                    services,
                    checked,
                    pins,
                    runs,
                    executor=executor,
                    workers=workers,
                    pool=pool,  # type: ignore[arg-type]
                    broker_url=broker,
                    timeout=timeout,
                    on_notice=lambda text: errors.print(f"[yellow]note:[/] {text}"),
                    on_finished=progress.finished if progress else None,
                    batch_id=batch_id,
                )
        except (KeyboardInterrupt, Interrupted) as exc:
            if executor == "celery":
                fail(
                    "interrupted; the runs go on on the workers: wtm runs watch RUN follows them",
                    code=130,
                )
            code = 143 if isinstance(exc, Interrupted) else 130
            fail("cancelled; unfinished steps are recorded as cancelled", code=code)
        except ConfigError as exc:
            fail(str(exc))
        results = [s.result or {} for s in sessions]
        if progress:
            progress.report(sessions)
    document: Any = results[0] if not batch else {"batch_id": batch_id, "runs": results}
    if output:
        Path(output).write_text(json.dumps(document, indent=2) + "\n")
    if as_json:
        print_json(document)
    elif not batch:
        render_result(results[0], console)
    statuses = [r["processing_summary"]["status"] for r in results]
    if any(s != "succeeded" for s in statuses):
        sys.exit(EXIT_FAILED_RUN)


class BatchProgress:
    """A progress bar for a batch: done, failed, rate and ETA; then a summary."""

    def __init__(self, total: int, quiet: bool) -> None:
        self.started = time.perf_counter()
        self.done = 0
        self.failed: list[RunSession] = []
        self.quiet = quiet
        columns = (
            TextColumn("[bold]batch"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[failed]} failed"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        self.progress = Progress(*columns, console=errors, disable=quiet)
        self.task = self.progress.add_task("runs", total=total, failed=0, rate="")

    def __enter__(self) -> BatchProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def finished(self, session: RunSession) -> None:
        """A run of the batch ended."""
        self.done += 1
        if session.result and session.result["processing_summary"]["status"] != "succeeded":
            self.failed.append(session)
        per_minute = self.done / max(time.perf_counter() - self.started, 1e-9) * 60
        self.progress.update(
            self.task,
            completed=self.done,
            failed=len(self.failed),
            rate=f"{per_minute:.1f} runs/min",
        )

    def report(self, sessions: list[RunSession]) -> None:
        """Print runs/min and each failed run with its reason."""
        if self.quiet:
            return
        elapsed = time.perf_counter() - self.started
        errors.print(
            f"{len(sessions)} runs in {elapsed:.1f}s: "
            f"{len(sessions) / elapsed * 60:.1f} runs/min, {len(self.failed)} failed"
        )
        for session in self.failed:
            summary = session.result["processing_summary"] if session.result else {}
            errors.print(
                f"  {session.run_id} {session.record.inputs}: "
                f"{'; '.join(summary.get('errors', ['failed']))}",
                soft_wrap=True,
            )
