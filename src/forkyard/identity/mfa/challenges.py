"""Sign-in challenges: after the first factor (password, magic link, OAuth) an account with a
confirmed factor gets a challenge token instead of cookies. Only the token's hash is stored,
bound to the user; it expires, allows a few attempts and is used once."""

from __future__ import annotations

import math
from datetime import timedelta

from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from forkyard.audit.service import record_for_user
from forkyard.config import Settings
from forkyard.events import emit
from forkyard.identity import schemas
from forkyard.identity.events import UserSignedIn
from forkyard.identity.mfa import backup_codes
from forkyard.identity.mfa.errors import ChallengeInvalid
from forkyard.identity.models import LoginChallenge, MfaFactor, OneTimeToken, User
from forkyard.identity.service import signed_in_response, start_session
from forkyard.kit.clock import utcnow
from forkyard.kit.crypto import random_token, token_hash
from forkyard.kit.errors import RateLimited
from forkyard.kit.http import client_ip


async def confirmed_factors(session: AsyncSession, user_id: str) -> list[MfaFactor]:
    rows = await session.execute(
        select(MfaFactor)
        .where(MfaFactor.user_id == user_id, MfaFactor.confirmed_at.is_not(None))
        .order_by(MfaFactor.created_at)
    )
    return list(rows.scalars())


async def factor_kinds(session: AsyncSession, user_id: str) -> list[str]:
    kinds = sorted({f.kind for f in await confirmed_factors(session, user_id)})
    if kinds and await backup_codes.remaining(session, user_id):
        kinds.append("backup_code")
    return kinds


async def start_challenge(
    session: AsyncSession, request: Request, user: User, *, method: str
) -> schemas.LoginResult | None:
    """A challenge when the account has a confirmed factor; None when one factor suffices."""
    kinds = await factor_kinds(session, user.id)
    if not kinds:
        return None
    settings: Settings = request.app.state.settings
    user_agent = request.headers.get("user-agent")
    raw = random_token()
    challenge = LoginChallenge(
        user_id=user.id,
        token_hash=token_hash(raw),
        method=method,
        expires_at=utcnow() + timedelta(seconds=settings.mfa_challenge_ttl_s),
        attempts=0,
        codes_sent=0,
        ip=client_ip(request, settings.trusted_proxies),
        user_agent=(user_agent or "")[:400] or None,
    )
    session.add(challenge)
    await session.flush()
    await record_for_user(
        session,
        request,
        user,
        "auth.mfa_challenged",
        actor="unverified",
        data={"method": method},
    )
    return schemas.LoginResult(
        user=None, session_id=None, mfa_required=True, challenge_token=raw, factors=kinds
    )


async def load_challenge(
    session: AsyncSession, settings: Settings, raw: str
) -> tuple[LoginChallenge, User]:
    """The live challenge for this token (row-locked), or 401 mfa_challenge_invalid."""
    challenge = (
        await session.execute(
            select(LoginChallenge)
            .where(LoginChallenge.token_hash == token_hash(raw))
            .with_for_update()
        )
    ).scalar_one_or_none()
    if (
        challenge is None
        or not challenge.is_live(utcnow())
        or challenge.attempts >= settings.mfa_challenge_max_attempts
    ):
        raise ChallengeInvalid()
    user = await session.get(User, challenge.user_id)
    if user is None or user.deleted_at is not None:
        raise ChallengeInvalid()
    await _check_user_guesses(session, settings, user.id)
    return challenge, user


async def _check_user_guesses(session: AsyncSession, settings: Settings, user_id: str) -> None:
    """Each challenge allows a few attempts, but whoever knows the password can start as many
    challenges as they like: the account's failures across all of them are capped too, or a
    six-digit code falls to patience."""
    since = utcnow() - timedelta(seconds=settings.mfa_user_failure_window_s)
    failed, oldest = (
        await session.execute(
            select(
                func.coalesce(func.sum(LoginChallenge.attempts), 0),
                func.min(LoginChallenge.created_at),
            ).where(
                LoginChallenge.user_id == user_id,
                LoginChallenge.created_at > since,
                LoginChallenge.attempts > 0,
            )
        )
    ).one()
    if failed >= settings.mfa_user_max_failures:
        wait = (oldest - since).total_seconds() if oldest is not None else 1
        raise RateLimited(
            max(1, math.ceil(wait)),
            "Too many wrong second-factor codes for this account; wait before trying again.",
        )


async def fail_attempt(
    session: AsyncSession, challenge: LoginChallenge, user: User, request: Request, reason: str
) -> None:
    """Spend one attempt; the caller's error keeps it (keep_changes) though the request fails."""
    challenge.attempts += 1
    await record_for_user(
        session,
        request,
        user,
        "auth.mfa_failed",
        actor="unverified",
        data={"reason": reason, "attempts": challenge.attempts},
    )


async def sign_in(
    session: AsyncSession,
    request: Request,
    user: User,
    *,
    method: str,
    mfa_verified: bool,
) -> JSONResponse:
    """Start a session, set its cookies and answer like POST /v1/auth/login does."""
    settings: Settings = request.app.state.settings
    ip = client_ip(request, settings.trusted_proxies)
    user_agent = request.headers.get("user-agent")
    issued = await start_session(
        session, settings, user, ip=ip, user_agent=user_agent, mfa_verified=mfa_verified
    )
    if mfa_verified:
        # Whoever holds the factors just proved it: a pending recovery was not needed.
        await session.execute(
            update(OneTimeToken)
            .where(
                OneTimeToken.user_id == user.id,
                OneTimeToken.purpose == "recovery",
                OneTimeToken.used_at.is_(None),
            )
            .values(used_at=utcnow())
        )
    await emit(session, UserSignedIn.of(user, issued.session, method, mfa_verified))
    await record_for_user(
        session,
        request,
        user,
        "auth.login",
        target_type="session",
        target_id=issued.session.id,
        data={"method": method, "mfa": mfa_verified},
    )
    return signed_in_response(settings, user, issued)


async def challenge_or_sign_in(
    session: AsyncSession, request: Request, user: User, *, method: str
) -> JSONResponse:
    """For sign-ins that are not a password (magic link, OAuth): the second factor still applies."""
    challenge = await start_challenge(session, request, user, method=method)
    if challenge is not None:
        return JSONResponse(challenge.model_dump(mode="json"))
    return await sign_in(session, request, user, method=method, mfa_verified=False)
