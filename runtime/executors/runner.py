"""Run one step invocation where a worker is: the same code for every executor.

Loads the package the call's pin names, only if the registry records it for that
task (a plan in Redis can be forged), decodes and validates the inputs, calls the
hook with a context, validates and encodes the outputs, and records the step
execution and its values (with lineage) in the metadata store.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback
from dataclasses import replace

from runtime.context import TaskContext
from runtime.executors.cache import cache_entry
from runtime.executors.calls import StepCall, StepResult
from runtime.executors.records import call_record, call_values
from runtime.extensions import notify
from runtime.loader import PackageRefused
from runtime.owner import host_pid
from runtime.portcheck import check_inputs, check_outputs
from runtime.services import Services
from runtime.stores.metadata import utc_now
from runtime.timeouts import time_limit
from runtime.values import decode, encode

log = logging.getLogger("wtm.runner")


class StepFailed(Exception):
    """A step invocation failed; the message is one line naming the step."""


def run_call(
    call: StepCall, services: Services, cancel: threading.Event | None = None
) -> StepResult:
    """Execute ``call`` and record it; raises :class:`StepFailed` with a one-line reason."""
    label = call.label()
    refs = call.input_refs()
    base = call_record(
        call,
        host_pid(),
        status="running",
        started_at=utc_now(),
        inputs={p: r.id for p, r in refs.items()},
    )
    services.metadata.record_step(base)
    notify("wtm_step_started", run_id=call.run_id, step_id=call.step_id, attempt=call.attempt)
    started = time.perf_counter()
    try:
        pin = call.task
        loaded = services.loader.load_pinned(pin.name, pin.version, pin.digest, call.run_id)
        started = time.perf_counter()  # a step's time leaves out loading its plugin and models
        values = {port: decode(ref, services.access) for port, ref in refs.items()}
        checked = check_inputs(loaded.manifest.inputs, values, label)
        context = TaskContext(
            call.run_id,
            call.step_id,
            services.access,
            logging.getLogger(f"wtm.task.{call.task.name}"),
            call.attempt,
            cancel or threading.Event(),
        )
        with time_limit(call.task.timeout):
            produced = loaded.run(checked, context)
        outputs = check_outputs(loaded.manifest.outputs, produced, label)
        encoded = {
            port: encode(v, services.access, services.settings.inline_threshold)
            for port, v in outputs.items()
        }
    except (Exception, SystemExit) as exc:
        if isinstance(exc, SystemExit) and _terminated():
            raise  # the pool is ending this process (a hard time limit): not the plugin
        seconds = time.perf_counter() - started
        message = exit_message(exc, label) if isinstance(exc, SystemExit) else one_line(exc, label)
        services.metadata.record_step(
            replace(
                base,
                status="failed",
                finished_at=utc_now(),
                seconds=seconds,
                error=message,
                traceback_tail=_tail(exc),
            )
        )
        notify(
            "wtm_step_failed",
            run_id=call.run_id,
            step_id=call.step_id,
            error=message,
            attempt=call.attempt,
        )
        raise StepFailed(message) from exc
    seconds = time.perf_counter() - started
    finished = replace(
        base,
        status="succeeded",
        finished_at=utc_now(),
        seconds=seconds,
        outputs={p: r.id for p, r in encoded.items()},
    )
    stopped = cancel is not None and cancel.is_set()  # a result cut short is not kept
    entry = cache_entry(call, encoded, seconds) if call.task.cache and not stopped else None
    cache = [entry] if entry is not None else []
    services.metadata.record(call_values(call, refs, encoded), [finished], cache)
    notify(
        "wtm_step_finished",
        run_id=call.run_id,
        step_id=call.step_id,
        outputs=outputs,
        seconds=seconds,
    )
    return StepResult({p: r.to_json() for p, r in encoded.items()}, seconds, host_pid())


def one_line(exc: BaseException, label: str) -> str:
    """``exc`` as one line that names the step (``label``); a refused package's reason is
    written for people, so it goes without its type."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if text.startswith(label):
        return text
    if isinstance(exc, PackageRefused):
        return f"{label}: {text}"
    return f"{label}: {type(exc).__name__}: {text}"


def _terminated() -> bool:
    """True if this process's terminate-signal handler raised the SystemExit (a Celery pool
    process killed at its hard time limit or at shutdown), rather than the plugin."""
    common = sys.modules.get("billiard.common")
    fired = getattr(common, "terminate_handler_fired", None)
    return bool(fired is not None and fired())


def exit_message(exc: SystemExit, label: str) -> str:
    """A plugin called ``sys.exit``: a failure of its step, never the end of the worker."""
    return f"{label}: the plugin called sys.exit({exc.code!r})"


def _tail(exc: BaseException, lines: int = 12) -> str:
    return "".join(traceback.format_exception(exc)[-lines:])[-4000:]
