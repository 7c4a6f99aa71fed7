"""The one error base class: a stable machine code, an HTTP status and a message for people."""

from __future__ import annotations

from typing import Any


class ForkyardError(Exception):
    status_code: int = 400
    code: str = "bad_request"
    message: str = "The request could not be processed."
    # Whether the request's changes are committed although it fails (db.session honours it): a
    # failed attempt that must be counted, a session revoked on reuse. Route code never commits.
    keep_changes: bool = False

    def __init__(
        self, message: str | None = None, *, details: dict[str, Any] | None = None, **extra: Any
    ) -> None:
        self.message = message or self.message
        self.details = details or {}
        self.headers: dict[str, str] = extra.pop("headers", {}) or {}
        if extra.pop("keep_changes", False):
            self.keep_changes = True
        super().__init__(self.message)


class BadRequest(ForkyardError):
    status_code = 400
    code = "bad_request"


class MalformedJSON(ForkyardError):
    status_code = 400
    code = "malformed_json"
    message = "The request body is not valid JSON."


class Unauthenticated(ForkyardError):
    status_code = 401
    code = "unauthenticated"
    message = "Sign in or pass an API key."


class Forbidden(ForkyardError):
    status_code = 403
    code = "forbidden"
    message = "You are not allowed to do that."


class SudoRequired(ForkyardError):
    status_code = 403
    code = "sudo_required"
    message = "Confirm your password (POST /v1/auth/sudo) before doing this."


class QuotaExceeded(ForkyardError):
    status_code = 403
    code = "quota_exceeded"


class NotFound(ForkyardError):
    status_code = 404
    code = "not_found"
    message = "Not found."

    @classmethod
    def of(cls, kind: str, ident: str) -> NotFound:
        return cls(f"{kind} {ident} was not found.", details={"id": ident})


class Conflict(ForkyardError):
    status_code = 409
    code = "conflict"


class IdempotencyConflict(Conflict):
    code = "idempotency_conflict"
    message = "This Idempotency-Key was used with a different request."


class ValidationFailed(ForkyardError):
    status_code = 422
    code = "validation_failed"
    message = "The request did not validate."


class RateLimited(ForkyardError):
    status_code = 429
    code = "rate_limited"
    message = "Too many requests; slow down."

    def __init__(self, retry_after_s: int, message: str | None = None) -> None:
        super().__init__(
            message,
            details={"retry_after_s": retry_after_s},
            headers={"Retry-After": str(retry_after_s)},
        )


class ServiceUnavailable(ForkyardError):
    status_code = 503
    code = "service_unavailable"
    message = "The service is not ready."
