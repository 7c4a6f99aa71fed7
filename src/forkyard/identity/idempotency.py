"""Idempotency-Key for POST: the same key and body within 24 h replays the first response; the
same key with another body is 409 `idempotency_conflict`. Keys are scoped to the authenticated
caller: a live API key or a live session's user, checked here as get_principal checks them. A
request that authenticates as nobody (no credentials, a revoked key, an ended session) gets no
record and no replay, and a response the app gave before authenticating is never kept.
Records expire after 24 h (lookups ignore them; a claim takes an expired one over; a periodic
sweep deletes them).

The SDKs send a key on every POST, exec included, so this sits on the hot path (ADR 0008): an
API key is resolved through the same cache get_principal uses (warm, no query), the claim is one
statement (insert, or take over an expired record, and read the earlier one in the same round
trip), and the answer is stored with one more; both on the plain autocommit connection. Its
`synchronous_commit = off` is safe for the claim: the request's own work commits after it, and a
commit flushes the WAL up to itself, the claim included. The stored answer may be lost with
the last fraction of a second of writes if PostgreSQL itself crashes: that key then answers
`idempotency_in_progress` until it expires, as it does when the API process dies mid-request."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, bindparam, delete, exists, literal_column, null, select, update
from sqlalchemy.dialects.postgresql import insert
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from forkyard.db.engine import Database, plain_sql
from forkyard.identity.cookies import ACCESS_COOKIE
from forkyard.identity.deps import _grant_of
from forkyard.identity.models import AuthSession, IdempotencyRecord
from forkyard.jobs.queue import JobContext, periodic
from forkyard.kit.clock import utcnow
from forkyard.kit.crypto import decrypt, encrypt, token_hash
from forkyard.kit.ids import new_id

WINDOW = timedelta(hours=24)
MAX_BODY = 10 * 1024 * 1024
PENDING = 0  # status_code of a record whose first request is still running
# Recorded responses can carry secrets shown once (a new API key): they are sealed at rest.
SEAL_PURPOSE = "idempotency-response"


def _statements() -> tuple[str, str, str, str]:
    """The middleware's statements, compiled once for `Database.plain()`."""
    rec = IdempotencyRecord
    principal = bindparam("p_principal", type_=rec.principal.type)
    key = bindparam("p_key", type_=rec.key.type)
    cutoff = bindparam("p_cutoff", type_=rec.created_at.type)
    fresh = insert(rec).values(
        principal=principal,
        key=key,
        method_path=bindparam("p_method_path"),
        body_hash=bindparam("p_body_hash"),
        status_code=literal_column(str(PENDING)),
        response_body=literal_column("''"),
        content_type=null(),
        created_at=bindparam("p_now"),
    )
    taken_over = ("method_path", "body_hash", "status_code", "response_body", "content_type")
    claimed = (
        fresh.on_conflict_do_update(
            index_elements=[rec.principal, rec.key],
            set_={c: getattr(fresh.excluded, c) for c in (*taken_over, "created_at")},
            where=rec.created_at < cutoff,  # an expired record is as good as none
        )
        .returning(rec.principal)
        .cte("claimed")
    )
    # The earlier record as the statement's snapshot shows it (one row, NULLs when none):
    # read in the same round trip as the claim, for the replay or the 409.
    one = select(literal_column("1").label("one")).subquery("one")
    claim = (
        select(
            exists(select(claimed.c.principal)).label("claimed"),
            rec.method_path,
            rec.body_hash,
            rec.status_code,
            rec.response_body,
            rec.content_type,
        )
        .select_from(
            one.outerjoin(
                rec, and_(rec.principal == principal, rec.key == key, rec.created_at >= cutoff)
            )
        )
        .add_cte(claimed)
    )
    finish = (
        update(rec)
        .where(rec.principal == principal, rec.key == key)
        .values(
            status_code=bindparam("p_status"),
            response_body=bindparam("p_response_body"),
            content_type=bindparam("p_content_type"),
        )
    )
    forget = delete(rec).where(rec.principal == principal, rec.key == key)
    session_user = select(AuthSession.user_id).where(
        AuthSession.access_hash == bindparam("p_access_hash"),
        AuthSession.revoked_at.is_(None),
        AuthSession.access_expires_at > bindparam("p_now"),
    )
    return plain_sql(claim), plain_sql(finish), plain_sql(forget), plain_sql(session_user)


CLAIM, FINISH, FORGET, SESSION_USER = _statements()


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


async def _caller(db: Database, scope: Scope) -> str | None:
    """Who is asking, if their credential is live now; None for anyone else."""
    now = utcnow()
    auth = _header(scope, b"authorization")
    if auth:
        scheme, _, raw = auth.partition(" ")
        if scheme.lower() != "bearer" or not raw.strip():
            return None
        # get_principal's own lookup and cache: the key it will find live, or not, in a moment.
        grant = await _grant_of(Request(scope), token_hash(raw.strip()))
        if (
            grant is None
            or grant.revoked_at is not None
            or (grant.expires_at is not None and grant.expires_at <= now)
            or grant.creator_deleted_at is not None
        ):
            return None
        return "key:" + grant.key_id
    access = _cookie(scope, ACCESS_COOKIE)
    if access:
        row = await db.plain(SESSION_USER, {"p_access_hash": token_hash(access), "p_now": now})
        return "usr:" + row[0] if row else None
    return None


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

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
        caller = await _caller(db, scope)
        replay_body = _replay(body, receive)
        if caller is None:
            # Nobody to scope a record to; and whatever the app answers (a 401, a sign-up's
            # result) must not become something a stranger can replay.
            await self.app(scope, replay_body, send)
            return

        now = utcnow()
        params = {
            "p_principal": caller,
            "p_key": key,
            "p_cutoff": now - WINDOW,
            "p_method_path": method_path,
            "p_body_hash": body_hash,
            "p_now": now,
        }
        row = await db.plain(CLAIM, params)
        if row is not None and not row[0] and row[1] is None:
            # Not claimed, yet no record in the statement's snapshot: a concurrent first
            # request committed its claim while this one waited on it. Once more sees it (or
            # claims the key, if that request has since failed and let it go).
            row = await db.plain(CLAIM, params)
        assert row is not None  # the statement always answers one row
        claimed, *earlier = row
        if not claimed:
            await _answer_from_record(send, scope, method_path, body_hash, *earlier)
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
            if status[0] >= 500 or streaming[0] or not authenticated:
                # Not a result worth replaying: let the client retry for real.
                await db.plain(FORGET, {"p_principal": caller, "p_key": key})
            else:
                sealed = encrypt(
                    scope["app"].state.settings.secret_key,
                    SEAL_PURPOSE,
                    b"".join(chunks).decode("utf-8", "replace"),
                )
                await db.plain(
                    FINISH,
                    {
                        "p_principal": caller,
                        "p_key": key,
                        "p_status": status[0],
                        "p_response_body": sealed,
                        "p_content_type": content_type[0],
                    },
                )


async def _answer_from_record(
    send: Send,
    scope: Scope,
    method_path: str,
    body_hash: str,
    earlier_method_path: str | None,
    earlier_body_hash: str | None,
    status_code: int | None,
    response_body: str | None,
    content_type: str | None,
) -> None:
    """The replay of an earlier request with this key, or why there is none."""
    if earlier_method_path != method_path or earlier_body_hash != body_hash:
        await _send_error(
            send,
            scope,
            409,
            "idempotency_conflict",
            "This Idempotency-Key was used with a different request.",
        )
    elif status_code == PENDING or status_code is None or response_body is None:
        await _send_error(
            send,
            scope,
            409,
            "idempotency_in_progress",
            "A request with this Idempotency-Key is still running; retry shortly.",
        )
    else:
        headers = [
            (b"content-type", (content_type or "application/json").encode()),
            (b"idempotent-replayed", b"true"),
        ]
        await send({"type": "http.response.start", "status": status_code, "headers": headers})
        secret_key = scope["app"].state.settings.secret_key
        body_out = decrypt(secret_key, SEAL_PURPOSE, response_body)
        await send({"type": "http.response.body", "body": body_out.encode()})


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
