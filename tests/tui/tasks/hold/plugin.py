"""Hold a step until its gate file exists (tests open the gate when they are ready)."""

import time
from pathlib import Path

from runtime import hookimpl

LONGEST = 120.0  # a test that never opens the gate fails here, not at the step's timeout


@hookimpl
def wtm_task_run(inputs, context):
    gate = Path(inputs["gate"])
    started = time.monotonic()
    while not gate.exists():
        context.check_cancelled()
        if time.monotonic() - started > LONGEST:
            raise RuntimeError(f"gate {gate} still shut after {LONGEST:g}s")
        time.sleep(0.02)
    return {"held": round(time.monotonic() - started, 3)}
