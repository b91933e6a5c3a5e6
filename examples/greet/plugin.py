"""The greet task: the smallest useful wtm task plugin."""

from runtime import hookimpl


@hookimpl
def wtm_task_run(inputs, context):
    """Return a greeting for ``inputs["name"]``."""
    context.logger.info("greeting %s", inputs["name"])
    return {"greeting": f"Hello, {inputs['name']}{inputs.get('punctuation', '!')}"}
