"""Native libraries' chatter stays out of the terminal (issue 14)."""

from __future__ import annotations

import subprocess
import sys

import pytest

ALLOCATE = """
import sys
from ai_edge_litert.interpreter import Interpreter
from runtime.packages import package_folder
from runtime.quiet import native_stderr_silenced

folder = package_folder("fer")
interpreter = Interpreter(model_path=str(folder / "data" / "emotion_model_quantized.tflite"))
if sys.argv[1] == "quiet":
    with native_stderr_silenced():
        interpreter.allocate_tensors()
else:
    interpreter.allocate_tensors()
print("after", file=sys.stderr)
"""


@pytest.mark.parametrize(("mode", "chatter"), [("plain", True), ("quiet", False)])
def test_the_tflite_delegate_line_is_silenced(mode: str, chatter: bool) -> None:
    done = subprocess.run(
        [sys.executable, "-c", ALLOCATE, mode], capture_output=True, text=True, check=True
    )
    assert ("XNNPACK" in done.stderr) is chatter, done.stderr
    assert done.stderr.endswith("after\n"), "stderr works again after the block"
