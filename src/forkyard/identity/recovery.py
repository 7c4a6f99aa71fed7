"""Account recovery for someone who lost their second factor: slow on purpose. The emailed token
works only after a cooldown (24 h by default), the owner is told at once by every channel we
have, and a successful MFA sign-in in the meantime cancels it. Completing removes every factor
and signs out every session."""

from __future__ import annotations

from datetime import timedelta

from fastapi import Request
from pydantic import BaseModel, EmailStr, Field
from sqlalchemy import delete, select

from forkyard.audit.service import record_for_user
from forkyard.db.session import DbSession
from forkyard.events import emit
from forkyard.identity import schemas
from forkyard.identity.deps import anonymous_limit, settings_of
from forkyard.identity.errors import InvalidToken
from forkyard.identity.events import UserMfaFactorRemoved
from forkyard.identity.models import BackupCode, MfaFactor, OneTimeToken, User
from forkyard.identity.routing import public_router
from forkyard.identity.service import find_user_by_email, issue_token, revoke_sessions
from forkyard.identity.sms import queue_sms
from forkyard.kit.clock import rfc3339, utcnow
from forkyard.kit.crypto import token_hash
from forkyard.kit.errors import Conflict
from forkyard.kit.http import client_ip
from forkyard.mail.sender import queue_email

public = public_router("auth", prefix="/v1/auth/recovery")

PUBLIC = ["/v1/auth/recovery/request", "/v1/auth/recovery/complete"]
MESSAGE = (
    "If an account uses that address, we emailed it a recovery link. For your safety it works "
    "only after a 24-hour wait."
)


class RecoveryCooldown(Conflict):
    code = "recovery_cooldown"
    message = "This recovery can be completed only after the waiting period."


class RecoveryRequest(BaseModel):
    email: EmailStr


class RecoveryComplete(BaseModel):
    token: str = Field(min_length=10, max_length=200)


@public.post(
    "/request", response_model=schemas.Message, dependencies=[anonymous_limit("recovery", 5)]
)
async def request_recovery(
    body: RecoveryRequest, request: Request, session: DbSession
) -> schemas.Message:
    """Email a recovery token (usable after the cooldown); the same answer for every address."""
    settings = settings_of(request)
    user = await find_user_by_email(session, body.email)
    if user is None:
        return schemas.Message(message=MESSAGE)
    ip = client_ip(request, settings.trusted_proxies)
    not_before = utcnow() + timedelta(seconds=settings.recovery_cooldown_s)
    token = await issue_token(
        session,
        user.id,
        "recovery",
        settings.recovery_window_s,
        {"not_before": rfc3339(not_before), "ip": ip},
    )
    await queue_email(
        session,
        user.email,
        "Your Forkyard account recovery link",
        "You asked to recover your account (remove its sign-in factors).\n"
        f"After {rfc3339(not_before)} complete it with this token:\n{token}\n"
        f"or at {settings.public_url}/recover?token={token}\n",
    )
    await queue_email(
        session,
        user.email,
        "Someone asked to recover your Forkyard account",
        f"A recovery of your account was requested from {ip}. It can complete after "
        f"{rfc3339(not_before)} and would remove your second factors.\n"
        "If this was not you, sign in with your second factor: that cancels the recovery.\n",
    )
    if user.phone and user.phone_verified_at:
        await queue_sms(
            session,
            user.phone,
            "Forkyard: a recovery of your account was requested. If it was not you, sign in "
            "now to cancel it.",
        )
    await record_for_user(session, request, user, "auth.recovery_requested", actor="stranger")
    return schemas.Message(message=MESSAGE)


@public.post(
    "/complete", response_model=schemas.Message, dependencies=[anonymous_limit("recovery-use", 10)]
)
async def complete_recovery(
    body: RecoveryComplete, request: Request, session: DbSession
) -> schemas.Message:
    """After the cooldown, remove every MFA factor and sign out every session."""
    now = utcnow()
    row = (
        await session.execute(
            select(OneTimeToken)
            .where(
                OneTimeToken.token_hash == token_hash(body.token),
                OneTimeToken.purpose == "recovery",
                OneTimeToken.live(now),
            )
            .with_for_update()
        )
    ).scalar_one_or_none()
    user = await session.get(User, row.user_id) if row is not None else None
    if row is None or user is None or user.deleted_at is not None:
        raise InvalidToken()
    not_before = row.created_at + timedelta(seconds=settings_of(request).recovery_cooldown_s)
    if now < not_before:
        raise RecoveryCooldown(details={"available_at": rfc3339(not_before)})
    row.used_at = now
    await session.execute(delete(MfaFactor).where(MfaFactor.user_id == user.id))
    await session.execute(delete(BackupCode).where(BackupCode.user_id == user.id))
    revoked = await revoke_sessions(session, user.id, reason="account_recovered")
    await record_for_user(
        session,
        request,
        user,
        "auth.recovery_completed",
        actor="stranger",
        data={"sessions_revoked": revoked},
    )
    # The owner is told by the security notice this event makes (notifications), email included.
    await emit(session, UserMfaFactorRemoved.of(user, None))
    return schemas.Message(
        message="Recovered: second factors removed and sessions signed out. Sign in again."
    )
