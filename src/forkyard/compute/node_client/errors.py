"""A node's error answer as the control plane raises it."""

from __future__ import annotations

import json
from typing import Any

from forkyard.kit.errors import ForkyardError


class RemoteError(ForkyardError):
    """An error the node reported, carried through with its code and status. A node's own
    failure (5xx) describes the host (paths, tool output): callers get a generic message and
    no details, and the node's text stays in `node_message` for the logs."""

    GENERIC = "The compute server could not do that."

    def __init__(
        self, status: int, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        self.node_message = message
        internal = status >= 500 and status != 503
        super().__init__(
            self.GENERIC if internal else message, details=None if internal else details
        )
        self.status_code = status
        self.code = code


def raise_remote(status: int, content: bytes) -> None:
    try:
        err = json.loads(content)["error"]
        raise RemoteError(status, err["code"], err["message"], err.get("details") or {})
    except (ValueError, KeyError, TypeError):
        raise RemoteError(502, "node_error", "The compute server failed.") from None
