"""Errors of checkpoints, snapshots, forks and base images, with stable codes."""

from forkyard.kit.errors import Conflict, ForkyardError, ValidationFailed


class CaptureFailed(ForkyardError):
    status_code = 500
    code = "capture_failed"
    message = "The capture failed; the instance keeps running and nothing was recorded."


class SnapshotInUse(Conflict):
    code = "snapshot_in_use"
    message = "Images or instances still depend on this snapshot."


class ImageInUse(Conflict):
    code = "image_in_use"
    message = "The image is its family's current version or instances still use it."


class ImageNotReady(Conflict):
    code = "image_not_ready"
    message = "The image is not in a state that allows this."


class NoPreviousVersion(Conflict):
    code = "no_previous_version"
    message = "The family has no earlier promoted version to roll back to."


class LayerElsewhere(Conflict):
    code = "layer_on_other_server"
    message = "The layer lives on another compute server than the instance."


class RecipeNotSupported(ValidationFailed):
    code = "recipe_not_supported"
    message = "This image recipe cannot be built yet."
