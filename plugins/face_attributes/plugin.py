"""The face_attributes task hook: image + faces_array -> faces_with_attributes."""

from runtime import hookimpl

from .attributes import face_attributes, load_models


@hookimpl
def wtm_task_setup():
    """Load the age, gender and emotion models when a worker process loads the plugin."""
    load_models()


@hookimpl
def wtm_task_run(inputs, context):
    """Estimate age, gender and emotion of every face in ``faces_array``."""
    path = context.local_path(inputs["image_path"])
    faces = face_attributes(path, inputs["faces_array"], context.check_cancelled)
    return {"faces_with_attributes": faces}
