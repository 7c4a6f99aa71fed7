"""Errors of checkpoints, snapshots, forks and base images, with stable codes."""

from forkyard.kit.errors import Conflict, ForkyardError


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
