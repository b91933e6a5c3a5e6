"""The face_detection task hooks: the default model loads at setup; image -> faces_array."""

from runtime import hookimpl

from .detector import DEFAULT, MIN_CONFIDENCE, detect_faces, load_default


@hookimpl
def wtm_task_setup():
    """Load BlazeFace (about 10 ms) once per process, outside any step's time."""
    load_default()


@hookimpl
def wtm_task_run(inputs, context):
    """Detect faces in ``image_path`` (a path or an artifact URI)."""
    return detect_faces(
        context.local_path(inputs["image_path"]),
        inputs.get("detector", DEFAULT),
        inputs.get("upsample", 0),
        inputs.get("min_confidence", MIN_CONFIDENCE),
    )
