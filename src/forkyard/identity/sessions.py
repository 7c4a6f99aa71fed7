"""The signed-in user's sessions (devices): list, revoke one, revoke all others (tag sessions)."""

from __future__ import annotations

from fastapi import Response
from sqlalchemy import select

from forkyard.audit.service import record
from forkyard.db.session import DbSession
from forkyard.identity import schemas
from forkyard.identity.deps import UserPrincipal, require_session
from forkyard.identity.models import AuthSession
from forkyard.identity.routing import protected_router
from forkyard.identity.service import device_of, revoke_sessions
from forkyard.kit.clock import utcnow
from forkyard.kit.errors import NotFound
from forkyard.kit.ids import has_prefix
from forkyard.kit.pagination import Page

router = protected_router("sessions", prefix="/v1/auth/me/sessions", requires=require_session)


@router.get("", response_model=Page[schemas.Session])
async def list_sessions(session: DbSession, principal: UserPrincipal) -> Page[schemas.Session]:
    """This user's active sessions, newest first; `current` marks the caller's own."""
    now = utcnow()
    rows = (
        await session.execute(
            select(AuthSession)
            .where(
                AuthSession.user_id == principal.user_id,
                AuthSession.revoked_at.is_(None),
                AuthSession.refresh_expires_at > now,
            )
            .order_by(AuthSession.created_at.desc())
            .limit(200)
        )
    ).scalars()
    return Page(
        data=[
            schemas.Session(
                id=s.id,
                device=device_of(s),
                ip=s.ip,
                user_agent=s.user_agent,
                created_at=s.created_at,
                last_seen_at=s.last_seen_at,
                current=s.id == principal.session_id,
            )
            for s in rows
        ],
        next_cursor=None,
    )


@router.delete("/{id}", status_code=204)
async def revoke_session(id: str, session: DbSession, principal: UserPrincipal) -> Response:
    """Sign out one device. Revoking the current session signs this caller out too."""
    target = await session.get(AuthSession, id) if has_prefix(id, "ses") else None
    if target is None or target.user_id != principal.user_id or target.revoked_at is not None:
        raise NotFound.of("Session", id)
    target.revoked_at = utcnow()
    target.revoked_reason = "revoked_by_user"
    await record(
        session, "session.revoked", principal=principal, target_type="session", target_id=id
    )
    return Response(status_code=204)


@router.post("/revoke-others", response_model=schemas.RevokedCount)
async def revoke_other_sessions(
    session: DbSession, principal: UserPrincipal
) -> schemas.RevokedCount:
    """Sign out every device except the caller's. With an API key there is no current session,
    so every session is revoked."""
    count = await revoke_sessions(
        session, principal.user_id or "", keep=principal.session_id, reason="revoke_others"
    )
    await record(session, "session.revoked_others", principal=principal, data={"count": count})
    return schemas.RevokedCount(revoked=count)
