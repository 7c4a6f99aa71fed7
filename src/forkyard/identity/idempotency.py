"""Idempotency-Key for POST: the same key and body within 24 h replays the first response; the
same key with another body is 409 `idempotency_conflict`. Keys are scoped to the authenticated
caller: a live API key or a live session's user, checked here as get_principal checks them. A
request that authenticates as nobody (no credentials, a revoked key, an ended session) gets no
record and no replay, and a response the app gave before authenticating is never kept.
Records expire after 24 h (lookups ignore them; a periodic sweep deletes them)."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.dialects.postgresql import insert
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from forkyard.db.engine import Database
from forkyard.identity.cookies import ACCESS_COOKIE
from forkyard.identity.models import ApiKey, AuthSession, IdempotencyRecord
from forkyard.jobs.queue import JobContext, periodic
from forkyard.kit.clock import utcnow
from forkyard.kit.crypto import decrypt, encrypt, token_hash
from forkyard.kit.ids import new_id

WINDOW = timedelta(hours=24)
MAX_BODY = 10 * 1024 * 1024
PENDING = 0  # status_code of a record whose first request is still running
# Recorded responses can carry secrets shown once (a new API key): they are sealed at rest.
SEAL_PURPOSE = "idempotency-response"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def _cookie(scope: Scope, name: str) -> str | None:
    raw = _header(scope, b"cookie")
    if not raw:
        return None
    for part in raw.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def _caller(self, db: Database, scope: Scope) -> str | None:
        """Who is asking, if their credential is live now; None for anyone else."""
        now = utcnow()
        auth = _header(scope, b"authorization")
        if auth:
            scheme, _, raw = auth.partition(" ")
            if scheme.lower() != "bearer" or not raw.strip():
                return None
            async with db.sessions() as session:
                key_id = (
                    await session.execute(
                        select(ApiKey.id).where(
                            ApiKey.key_hash == token_hash(raw.strip()),
                            ApiKey.revoked_at.is_(None),
                            or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now),
                        )
                    )
                ).scalar_one_or_none()
            return "key:" + key_id if key_id else None
        access = _cookie(scope, ACCESS_COOKIE)
        if access:
            async with db.sessions() as session:
                user_id = (
                    await session.execute(
                        select(AuthSession.user_id).where(
                            AuthSession.access_hash == token_hash(access),
                            AuthSession.revoked_at.is_(None),
                            AuthSession.access_expires_at > now,
                        )
                    )
                ).scalar_one_or_none()
            return "usr:" + user_id if user_id else None
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        key = _header(scope, b"idempotency-key")
        if not key:
            await self.app(scope, receive, send)
            return
        if len(key) > 200:
            await _send_error(
                send, scope, 400, "bad_request", "Idempotency-Key is too long (200 max)."
            )
            return

        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > MAX_BODY:
                await _send_error(
                    send, scope, 413, "payload_too_large", "The request body is too large."
                )
                return
        method_path = f"{scope['method']} {scope['path']}"
        body_hash = hashlib.sha256(body).hexdigest()
        db: Database = scope["app"].state.db
        caller = await self._caller(db, scope)
        now = utcnow()
        replay_body = _replay(body, receive)
        if caller is None:
            # Nobody to scope a record to; and whatever the app answers (a 401, a sign-up's
            # result) must not become something a stranger can replay.
            await self.app(scope, replay_body, send)
            return

        async with db.transaction() as session:
            await session.execute(
                delete(IdempotencyRecord).where(
                    IdempotencyRecord.principal == caller,
                    IdempotencyRecord.key == key,
                    IdempotencyRecord.created_at < now - WINDOW,
                )
            )
            inserted = (
                await session.execute(
                    insert(IdempotencyRecord)
                    .values(
                        principal=caller,
                        key=key,
                        method_path=method_path,
                        body_hash=body_hash,
                        status_code=PENDING,
                        response_body="",
                        content_type=None,
                        created_at=now,
                    )
                    .on_conflict_do_nothing()
                    .returning(IdempotencyRecord.key)
                )
            ).scalar_one_or_none()
            existing = None
            if inserted is None:
                existing = (
                    await session.execute(
                        select(IdempotencyRecord).where(
                            IdempotencyRecord.principal == caller,
                            IdempotencyRecord.key == key,
                            IdempotencyRecord.created_at >= now - WINDOW,
                        )
                    )
                ).scalar_one()

        if existing is not None:
            if existing.method_path != method_path or existing.body_hash != body_hash:
                await _send_error(
                    send,
                    scope,
                    409,
                    "idempotency_conflict",
                    "This Idempotency-Key was used with a different request.",
                )
            elif existing.status_code == PENDING:
                await _send_error(
                    send,
                    scope,
                    409,
                    "idempotency_in_progress",
                    "A request with this Idempotency-Key is still running; retry shortly.",
                )
            else:
                headers = [
                    (b"content-type", (existing.content_type or "application/json").encode()),
                    (b"idempotent-replayed", b"true"),
                ]
                await send(
                    {
                        "type": "http.response.start",
                        "status": existing.status_code,
                        "headers": headers,
                    }
                )
                secret_key = scope["app"].state.settings.secret_key
                body_out = decrypt(secret_key, SEAL_PURPOSE, existing.response_body)
                await send({"type": "http.response.body", "body": body_out.encode()})
            return

        status = [500]
        content_type: list[str | None] = [None]
        chunks: list[bytes] = []
        streaming = [False]

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                for k, v in message.get("headers", []):
                    if k == b"content-type":
                        content_type[0] = v.decode("latin-1")
                        streaming[0] = (content_type[0] or "").startswith("text/event-stream")
            elif message["type"] == "http.response.body" and not streaming[0]:
                chunks.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, replay_body, capture)
        finally:
            # Kept only when the app itself authenticated this caller (get_principal ran and
            # let it through): a refusal before that is about the credential, not the request.
            authenticated = scope.get("state", {}).get("principal") is not None
            async with db.transaction() as session:
                if status[0] >= 500 or streaming[0] or not authenticated:
                    # Not a result worth replaying: let the client retry for real.
                    await session.execute(
                        delete(IdempotencyRecord).where(
                            IdempotencyRecord.principal == caller, IdempotencyRecord.key == key
                        )
                    )
                else:
                    record = await session.get(IdempotencyRecord, (caller, key))
                    if record is not None:
                        record.status_code = status[0]
                        record.response_body = encrypt(
                            scope["app"].state.settings.secret_key,
                            SEAL_PURPOSE,
                            b"".join(chunks).decode("utf-8", "replace"),
                        )
                        record.content_type = content_type[0]


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body already read, handed to the app as if it arrived now."""
    replayed = False

    async def replay_receive() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay_receive


@periodic("idempotency.prune", 600.0)
async def prune_records(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Records past the 24-hour window are gone, not only ignored."""
    await ctx.session.execute(
        delete(IdempotencyRecord).where(IdempotencyRecord.created_at < utcnow() - WINDOW)
    )


async def _send_error(send: Send, scope: Scope, status: int, code: str, message: str) -> None:
    request_id = scope.get("state", {}).get("request_id") or new_id("req")
    payload = json.dumps(
        {"error": {"code": code, "message": message, "request_id": request_id, "details": {}}}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": payload})
