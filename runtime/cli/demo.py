"""``wtm demo``: install the face plugins and run the face pipeline on a sample image."""

from __future__ import annotations

from pathlib import Path

import click

from runtime.cli.common import open_services
from runtime.cli.output import errors, fail
from runtime.cli.run import run
from runtime.registry import InstallError

ROOT = Path(__file__).resolve().parent.parent.parent
FACE_PLUGINS = ("face_detection", "face_attributes", "face_features")


@click.command()
@click.option(
    "--image",
    type=click.Path(exists=True, dir_okay=False),
    help="Your own image instead of the sample (astronaut, public domain).",
)
@click.option(
    "--sample",
    default="astronaut",
    show_default=True,
    help="Sample image: astronaut, group6, camera, chelsea, coffee, rocket.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON only.")
@click.pass_context
def demo(ctx: click.Context, image: str | None, sample: str, as_json: bool) -> None:
    """Install the face plugins (and their requirements) and run the face pipeline."""
    pipeline = ROOT / "manifests" / "face_pipeline.yaml"
    if not pipeline.is_file():
        fail(f"{pipeline} not found: run wtm demo from a source checkout (pip install -e .)")
    if image is None:
        from runtime.samples import SAMPLES

        if sample not in SAMPLES:
            fail(f"unknown sample {sample!r} (samples: {', '.join(SAMPLES)})")
    with open_services() as services:
        for name in FACE_PLUGINS:
            try:
                result = services.registry.install(
                    ROOT / "plugins" / name, install_requirements=True
                )
            except InstallError as exc:
                fail(f"{name}: {exc}")
            if result.action != "unchanged" and not as_json:
                errors.print(f"installed {name}@{result.record.version}")
        if image is None:
            from runtime.samples import sample_path

            image = str(sample_path(sample, services.settings.home / "samples"))
    if not as_json:
        errors.print(f"running {pipeline.relative_to(ROOT)} on {image}")
    ctx.invoke(run, pipeline=str(pipeline), pairs=(f"image_path={image}",), as_json=as_json)
