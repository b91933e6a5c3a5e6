"""Local files named by file inputs, uploaded so workers on other hosts can read them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runtime.inputs import is_file_input
from runtime.manifest import PipelineManifest
from runtime.services import Services
from runtime.stores.artifacts import URI_PREFIX, artifact_uri, put_blob_file


def upload_files(
    services: Services, pipeline: PipelineManifest, inputs: Mapping[str, Any]
) -> dict[str, Any]:
    """The values of file inputs (``format: file``, see :mod:`runtime.inputs`) that are
    local paths, uploaded as artifacts so any worker can read them; other values as given."""
    uploaded = dict(inputs)
    for name, value in inputs.items():
        port = pipeline.inputs.get(name)
        local = isinstance(value, str) and not value.startswith(URI_PREFIX)
        if port and is_file_input(port) and local:
            uploaded[name] = artifact_uri(put_blob_file(services.artifacts, value))
    return uploaded
