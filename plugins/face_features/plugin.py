"""The face_features task hook: image + faces_array -> faces_with_features."""

from runtime import hookimpl

from .features import face_features, load_models


@hookimpl
def wtm_task_setup():
    """Load the default models (SFace, 5-point landmarks) when a process loads the plugin;
    dlib's descriptor and the 68-point model stay lazy, loaded only if a step asks."""
    load_models()


@hookimpl
def wtm_task_run(inputs, context):
    """Describe every face in ``faces_array`` (any sub-list; order and face_id are kept)."""
    path = context.local_path(inputs["image_path"])
    faces = face_features(
        path,
        inputs["faces_array"],
        inputs.get("landmarks", "5"),
        context.check_cancelled,
        inputs.get("descriptor", "sface"),
        inputs.get("align", "landmarks"),
    )
    return {"faces_with_features": faces}
