"""Keep native libraries' chatter out of the terminal.

The TFLite runtime prints ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.``
on file descriptor 2 when an interpreter allocates its tensors, from C++, with no
switch to turn it off; every ``wtm run`` and ``wtm demo`` showed it (issue 14).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()


@contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Send what native code writes to file descriptor 2 to the null device inside this
    block. Meant for a model's one-time setup: for that moment the process's other
    threads lose their stderr too."""
    with _lock:
        sys.stderr.flush()
        saved = os.dup(2)
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(null)
