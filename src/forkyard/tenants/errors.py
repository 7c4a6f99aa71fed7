"""Errors of the tenancy rules (stable codes, shared/API.md)."""

from forkyard.kit.errors import Conflict


class LastOwner(Conflict):
    code = "last_owner"
    message = "An org must keep at least one owner."
