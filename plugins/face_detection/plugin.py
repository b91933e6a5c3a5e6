"""The face_detection task hook: image -> faces_array and image size."""

from runtime import hookimpl

from .detector import MIN_CONFIDENCE, detect_faces


@hookimpl
def wtm_task_run(inputs, context):
    """Detect faces in ``image_path`` (a path or an artifact URI)."""
    return detect_faces(
        context.local_path(inputs["image_path"]),
        inputs.get("detector", "hog"),
        inputs.get("upsample", 0),
        inputs.get("min_confidence", MIN_CONFIDENCE),
    )
