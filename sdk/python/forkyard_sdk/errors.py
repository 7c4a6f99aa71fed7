"""One exception class per error code the API answers (`err.code`, `err.status`, `err.details`,
`err.request_id`). Catch `ForkyardError` for all of them, or a specific one:

    except errors.InstanceNotRunning: ...
"""

from __future__ import annotations

from typing import Any

from forkyard_sdk._generated import ERROR_CODES


class ForkyardError(Exception):
    """An error answer from the API, or no answer at all (code `connection_error`)."""

    code: str = "error"
    status: int = 0

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        details: dict[str, Any] | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.details = details or {}
        self.request_id = request_id

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class ConnectionError_(ForkyardError):
    code = "connection_error"


def _class_name(code: str) -> str:
    return "".join(part.capitalize() for part in code.split("_"))


BY_CODE: dict[str, type[ForkyardError]] = {}
for _code, _status in ERROR_CODES.items():
    _cls = type(_class_name(_code), (ForkyardError,), {"code": _code, "status": _status})
    _cls.__module__ = __name__
    globals()[_cls.__name__] = _cls
    BY_CODE[_code] = _cls


def from_response(status: int, body: Any, request_id: str | None = None) -> ForkyardError:
    """The exception for an error answer (the API's `{"error": {...}}` shape, or anything else)."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code = str(error.get("code") or "error")
        cls = BY_CODE.get(code, ForkyardError)
        return cls(
            str(error.get("message") or code),
            code=code,
            status=status,
            details=error.get("details") or {},
            request_id=error.get("request_id") or request_id,
        )
    return ForkyardError(f"HTTP {status}", code=f"http_{status}", status=status)


def __getattr__(name: str) -> type[ForkyardError]:
    """Classes are made from the code list; this keeps type checkers quiet about them."""
    for cls in BY_CODE.values():
        if cls.__name__ == name:
            return cls
    raise AttributeError(name)
