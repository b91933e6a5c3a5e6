"""``wtm run``: one run, or a batch of runs, of a pipeline."""

from __future__ import annotations

import glob
import json
import re
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
from rich.text import Text

from runtime import pipelines
from runtime.catalog import DirectoryCatalog, search_path
from runtime.cli.common import Seconds, open_services
from runtime.cli.output import console, errors, fail, print_json
from runtime.cli.results import render_result
from runtime.config import ConfigError
from runtime.execute import execute, prepare
from runtime.executors.base import EXECUTORS, Interrupted
from runtime.executors.calls import TaskPin
from runtime.executors.session import RunSession, new_run_id
from runtime.inputs import InputError, complete, jsonl_rows, parse_pairs
from runtime.manifest import PipelineManifest
from runtime.problems import ManifestError
from runtime.services import Services
from runtime.stores.errors import NotFound
from runtime.validate import CheckedPipeline

EXIT_FAILED_RUN = 1
REGISTERED_REF = re.compile(r"[a-z][a-z0-9_]*(@[^/\\]+)?")
"""What reads as a registered pipeline's ``NAME[@CONSTRAINT]`` rather than a file."""


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


def check_for_run(path: str, services: Services) -> tuple[CheckedPipeline, dict[str, TaskPin]]:
    """Load and check a pipeline (a file, else a registered NAME[@CONSTRAINT]) against the
    installed plugins, or exit 2."""
    try:
        return prepare(services, pipeline_source(path, services))
    except ManifestError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        _hint_uninstalled(exc, path)
        sys.exit(2)


def pipeline_source(text: str, services: Services) -> str | PipelineManifest:
    """The file ``text`` names, or the registered pipeline it names when no such file
    exists and it reads as ``NAME[@CONSTRAINT]``; exit 2 if neither."""
    if Path(text).exists() or not REGISTERED_REF.fullmatch(text):
        return text
    try:
        return pipelines.manifest_of(pipelines.resolve(services, text))
    except (NotFound, ValueError) as exc:
        fail(f"{text}: no such file, and {exc}")


def _hint_uninstalled(exc: ManifestError, path: str) -> None:
    local = DirectoryCatalog(search_path([path]))
    for problem in exc.problems:
        if "unknown task" in problem.message:
            name = problem.message.split("'")[1]
            for task in local.versions(name).values():
                folder = Path(task.source.path).parent
                errors.print(f"hint: install it with: wtm plugin install {folder}", soft_wrap=True)
                break


def run_inputs(
    pipeline: PipelineManifest,
    pairs: tuple[str, ...],
    batch: str | None,
    batch_input: str | None,
) -> list[dict[str, Any]]:
    """The checked inputs of each run: one run, or one per line of a JSON-lines file or
    per file matching a glob; exit 2 naming the first bad input."""
    try:
        fixed = parse_pairs(pipeline, pairs)
        if not batch:
            return [complete(pipeline, fixed)]
        if batch.endswith((".jsonl", ".ndjson")) and Path(batch).is_file():
            return [
                complete(pipeline, {**fixed, **row}, where)
                for where, row in jsonl_rows(Path(batch))
            ]
        name = batch_input or _single_input(pipeline, fixed)
        if name not in pipeline.inputs:
            fail(f"--batch-input {name!r}: the pipeline has no such input")
        files = sorted(glob.glob(batch, recursive=True))
        if not files:
            fail(f"--batch {batch!r}: no files match")
        return [complete(pipeline, {**fixed, name: file}, file) for file in files]
    except InputError as exc:
        fail(str(exc))


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
    type=Seconds(min=0, min_open=True),
    metavar="SECONDS",
    help="Celery: cancel the runs still unfinished after this long [wait for them].",
)
@click.option(
    "--no-cache",
    is_flag=True,
    help="Run every step: reuse no cached result (new results are still cached).",
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
    no_cache: bool,
    as_json: bool,
    output: str | None,
) -> None:
    """Run a pipeline (a file, or a registered NAME[@CONSTRAINT]); exit 0 if it succeeded,
    1 if it failed, 2 on bad input."""
    if output:
        check_output_path(output)
    with open_services() as services:
        checked, pins = check_for_run(pipeline, services)
        runs = run_inputs(checked.pipeline, pairs, batch, batch_input)
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
                    on_notice=notice,
                    on_finished=progress.finished if progress else None,
                    batch_id=batch_id,
                    reuse=not no_cache,
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
        write_output(output, document)
    if as_json:
        print_json(document)
    elif not batch:
        render_result(results[0], console)
    statuses = [r["processing_summary"]["status"] for r in results]
    if any(s != "succeeded" for s in statuses):
        sys.exit(EXIT_FAILED_RUN)


def check_output_path(output: str) -> None:
    """Refuse an ``--output`` that cannot be written before anything runs."""
    folder = Path(output).parent
    if not folder.is_dir():
        fail(f"--output {output}: no folder {str(folder)!r} to write into")


def write_output(output: str, document: Any) -> None:
    """Write the result JSON; exit 2 with the reason if that fails (the runs are recorded:
    wtm runs show has them)."""
    try:
        Path(output).write_text(json.dumps(document, indent=2) + "\n")
    except OSError as exc:
        fail(f"--output {output}: {exc.strerror or exc}; the runs are recorded: wtm runs list")


def notice(text: str) -> None:
    """A note about a run in progress, on stderr."""
    errors.print(Text.assemble(("note:", "yellow"), f" {text}"), soft_wrap=True)


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
