"""Local files named by pipeline inputs, uploaded so workers on other hosts can read them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runtime.manifest import PipelineManifest
from runtime.services import Services
from runtime.stores.artifacts import artifact_uri, put_blob_file


def upload_files(
    services: Services, pipeline: PipelineManifest, inputs: Mapping[str, Any]
) -> dict[str, Any]:
    """String inputs naming local files, uploaded as artifacts so any worker can read them."""
    uploaded = dict(inputs)
    for name, value in inputs.items():
        port = pipeline.inputs.get(name)
        if (
            port
            and port.schema.get("type") == "string"
            and isinstance(value, str)
            and Path(value).is_file()
        ):
            uploaded[name] = artifact_uri(put_blob_file(services.artifacts, value))
    return uploaded
