"""Compute errors with stable codes."""

from forkyard.kit.errors import Conflict, Forbidden, ForkyardError


class InstanceNotRunning(Conflict):
    code = "instance_not_running"
    message = "The instance is not running."


class InvalidTransition(Conflict):
    code = "invalid_transition"
    message = "The instance cannot do that in its current state."


class EmailNotVerified(Forbidden):
    code = "email_not_verified"
    message = "Verify your email address before creating compute."


class NoCapacity(ForkyardError):
    status_code = 503
    code = "no_capacity"
    message = "No compute server has room for this instance right now."


class NodeUnreachable(ForkyardError):
    status_code = 503
    code = "server_unreachable"
    message = "The instance's compute server is not answering."


class EditNoMatch(Conflict):
    code = "edit_no_match"
    message = "old_str was not found; nothing was changed."


class EditNotUnique(Conflict):
    code = "edit_not_unique"
    message = "old_str occurs more than once; nothing was changed (pass replace_all to replace every one)."


class ProfileInUse(Conflict):
    code = "profile_name_taken"
    message = "A profile with this name already exists."


class CallTooLarge(ForkyardError):
    """A call to a node that would not fit in one message of its call channel; refused alone,
    so the channel other tenants' calls share stays up."""

    status_code = 413
    code = "payload_too_large"
    message = "The request is too large for the compute server."


class FileTooLarge(ForkyardError):
    """A read of more than the server's read limit at once (`details.max_bytes`); read it in
    ranges with `offset` and `limit`."""

    status_code = 400
    code = "file_too_large"
    message = "The file is too large to read at once; read it in ranges (offset, limit)."
