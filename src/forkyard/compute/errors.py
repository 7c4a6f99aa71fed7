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
