"""The face_features task hook: image + faces_array -> faces_with_features."""

from runtime import hookimpl

from .features import face_features


@hookimpl
def wtm_task_run(inputs, context):
    """Describe every face in ``faces_array`` (any sub-list; order and face_id are kept)."""
    path = context.local_path(inputs["image_path"])
    landmarks = inputs.get("landmarks", "5")
    faces = face_features(path, inputs["faces_array"], landmarks, context.check_cancelled)
    return {"faces_with_features": faces}
