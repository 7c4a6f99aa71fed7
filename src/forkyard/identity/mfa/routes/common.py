"""What the factor routes share: the signed-in user, a pending enrollment's start and end, and
how a factor is shown."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import delete, select

from forkyard.audit.service import record
from forkyard.db.session import DbSession
from forkyard.events import emit
from forkyard.identity.deps import CurrentPrincipal, settings_of
from forkyard.identity.errors import CookieSessionRequired
from forkyard.identity.events import UserMfaFactorAdded
from forkyard.identity.mfa import schemas as s
from forkyard.identity.mfa.codes import check_code
from forkyard.identity.mfa.errors import InvalidCode, NoPendingEnrollment
from forkyard.identity.models import MfaFactor, User
from forkyard.identity.principal import Principal
from forkyard.identity.sms import mask_phone
from forkyard.kit.clock import utcnow
from forkyard.kit.errors import Conflict, NotFound


class MfaNotEnabled(Conflict):
    code = "mfa_not_enabled"
    message = "Set up a second factor first."


def mask_email(email: str) -> str:
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


def hint(factor: MfaFactor, user: User) -> str | None:
    if factor.kind == "sms":
        return mask_phone(factor.phone)
    if factor.kind == "email":
        return mask_email(user.email)
    return None


async def _session_user(session: DbSession, principal: CurrentPrincipal) -> User:
    """Factors are managed from a signed-in browser, never with an API key."""
    if principal.session_id is None or principal.user_id is None:
        raise CookieSessionRequired()
    user = await session.get(User, principal.user_id)
    if user is None or user.deleted_at is not None:
        raise NotFound()
    return user


SessionUser = Annotated[User, Depends(_session_user)]


async def pending_factor(
    session: DbSession, user: User, kind: str, factor_id: str | None = None
) -> MfaFactor:
    query = select(MfaFactor).where(
        MfaFactor.user_id == user.id, MfaFactor.kind == kind, MfaFactor.confirmed_at.is_(None)
    )
    if factor_id is not None:
        query = query.where(MfaFactor.id == factor_id)
    factor = (
        (await session.execute(query.order_by(MfaFactor.created_at.desc()).limit(1)))
        .scalars()
        .first()
    )
    if factor is None:
        raise NoPendingEnrollment()
    return factor


async def begin_enrollment(
    session: DbSession, user: User, kind: str, **fields: object
) -> MfaFactor:
    """A new pending factor; older unfinished enrollments of the same kind are dropped."""
    await session.execute(
        delete(MfaFactor).where(
            MfaFactor.user_id == user.id, MfaFactor.kind == kind, MfaFactor.confirmed_at.is_(None)
        )
    )
    factor = MfaFactor(user_id=user.id, kind=kind, sign_count=0, **fields)
    session.add(factor)
    await session.flush()
    return factor


async def confirm_factor(
    session: DbSession, principal: Principal, user: User, factor: MfaFactor, name: str
) -> s.Factor:
    factor.confirmed_at = utcnow()
    factor.name = name
    factor.pending_challenge = None
    await session.flush()
    await record(
        session,
        "auth.mfa_factor_added",
        principal=principal,
        target_type="mfa_factor",
        target_id=factor.id,
        data={"kind": factor.kind},
    )
    # The owner is told by the security notice this event makes (notifications), email included.
    await emit(session, UserMfaFactorAdded.of(user, factor))
    return factor_out(factor, user)


def factor_out(factor: MfaFactor, user: User) -> s.Factor:
    return s.Factor(
        id=factor.id,
        kind=factor.kind,  # type: ignore[arg-type]
        name=factor.name,
        hint=hint(factor, user),
        created_at=factor.created_at,
        last_used_at=factor.last_used_at,
    )


async def check_enrollment_code(
    request: Request, session: DbSession, user: User, purpose: str, code: str, target: str | None
) -> None:
    try:
        await check_code(
            session,
            settings_of(request),
            user_id=user.id,
            purpose=purpose,
            code=code,
            target=target,
        )
    except InvalidCode as exc:
        exc.keep_changes = True  # the spent attempt counts
        raise
