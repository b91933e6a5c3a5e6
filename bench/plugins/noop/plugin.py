"""A task that does nothing: ``out`` is ``a``."""

from runtime import hookimpl


@hookimpl
def wtm_task_run(inputs, context):
    return {"out": inputs.get("a", [])}
