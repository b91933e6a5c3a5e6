"""``wtm validate``, ``wtm schema`` and ``wtm graph``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click
from rich.text import Text
from rich.tree import Tree

from runtime.catalog import ChainCatalog, DirectoryCatalog, TaskCatalog, search_path
from runtime.cli.output import console, fail, print_json
from runtime.manifest import PipelineManifest, TaskManifest, format_schema, load_manifest
from runtime.problems import ManifestError, Problem, errors
from runtime.validate import CheckedPipeline, check_pipeline, check_task

task_path_option = click.option(
    "--task-path",
    "task_paths",
    multiple=True,
    type=click.Path(file_okay=False),
    help="Folder of plugin folders to resolve tasks from (repeatable; also WTM_TASK_PATH).",
)


def task_catalog(task_paths: Sequence[str], near: Sequence[str]) -> TaskCatalog:
    """Tasks from explicit folders first, then the default search path."""
    return ChainCatalog(DirectoryCatalog(task_paths), DirectoryCatalog(search_path(near)))


def check_file(path: str, catalog: TaskCatalog) -> tuple[str, list[Problem]]:
    """Validate one manifest: a one-line summary and every problem found."""
    try:
        manifest = load_manifest(path)
        if isinstance(manifest, TaskManifest):
            problems = check_task(manifest)
            if errors(problems):
                return "", problems
            return (
                f"Task {manifest.key}: {len(manifest.inputs)} inputs, "
                f"{len(manifest.outputs)} outputs",
                problems,
            )
        checked = check_pipeline(manifest, catalog)
    except ManifestError as exc:
        return "", exc.problems
    graph = checked.graph
    return (
        f"Pipeline {manifest.name}@{manifest.version}: {len(graph.deps)} steps in "
        f"{len(graph.stages)} stages, {len(graph.edges)} edges"
    ), checked.warnings


@click.command()
@click.argument("files", nargs=-1, required=True)
@task_path_option
def validate(files: tuple[str, ...], task_paths: tuple[str, ...]) -> None:
    """Check manifests; print one line per problem as path:line:col: severity: message."""
    catalog = task_catalog(task_paths, files)
    bad = 0
    for path in files:
        summary, problems = check_file(path, catalog)
        for problem in problems:
            click.echo(str(problem))
        if errors(problems):
            bad += 1
        else:
            console.print(Text.assemble(("ok", "green"), f" {path}: {summary}"), soft_wrap=True)
    if bad:
        click.echo(f"{bad} of {len(files)} file(s) invalid", err=True)
        sys.exit(2)


@click.command()
@click.argument("kind", type=click.Choice(["task", "pipeline"]))
def schema(kind: str) -> None:
    """Print the JSON Schema of a manifest kind (for editors and CI)."""
    print_json(format_schema(kind))


def load_checked(path: str, task_paths: Sequence[str]) -> CheckedPipeline:
    """Load and check a pipeline, or exit 2 with its problems."""
    try:
        manifest = load_manifest(path)
        if not isinstance(manifest, PipelineManifest):
            fail(f"{path}: is a Task manifest; expected a Pipeline")
        return check_pipeline(manifest, task_catalog(task_paths, [path]))
    except ManifestError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        sys.exit(2)


@click.command()
@click.argument("pipeline", type=click.Path())
@task_path_option
@click.option("--json", "as_json", is_flag=True, help="Print the graph as JSON.")
def graph(pipeline: str, task_paths: tuple[str, ...], as_json: bool) -> None:
    """Print a pipeline's stages, data-flow edges and critical path."""
    checked = load_checked(pipeline, task_paths)
    g = checked.graph
    critical = g.critical_path()
    if as_json:
        print_json(
            {
                "pipeline": g.pipeline.name,
                "version": g.pipeline.version,
                "stages": [list(s) for s in g.stages],
                "steps": {
                    sid: {"task": t.key, "needs": sorted(g.deps[sid])} for sid, t in g.tasks.items()
                },
                "edges": [str(e) for e in g.edges],
                "critical_path": critical,
            }
        )
        return
    tree = Tree(
        Text.assemble(
            (g.pipeline.name, "bold"),
            f"@{g.pipeline.version}  ({len(g.deps)} steps, {len(g.stages)} stages)",
        )
    )
    for number, stage in enumerate(g.stages, 1):
        branch = tree.add(f"stage {number}" + (" (parallel)" if len(stage) > 1 else ""))
        for sid in stage:
            step = g.pipeline.step(sid)
            mapped = " foreach " + str(step.foreach.source) if step.foreach else ""
            node = branch.add(Text.assemble((sid, "cyan"), f" {g.tasks[sid].key}{mapped}"))
            for edge in g.edges_into(sid):
                node.add(Text(str(edge), style="dim"))
    console.print(tree)
    console.print("critical path: " + " -> ".join(critical))
