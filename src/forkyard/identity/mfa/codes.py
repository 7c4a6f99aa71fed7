"""Short numeric codes sent by SMS or email. Stored as a keyed hash (a 6-digit code is guessable
from a plain hash), single use, attempt-limited and short-lived."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from forkyard.config import Settings
from forkyard.identity.mfa.errors import InvalidCode
from forkyard.identity.models import MfaCode
from forkyard.kit.clock import utcnow


def code_digest(settings: Settings, user_id: str, code: str) -> str:
    key = hashlib.sha256(f"mfa-code:{settings.secret_key}".encode()).digest()
    return hmac.new(key, f"{user_id}:{code.strip()}".encode(), hashlib.sha256).hexdigest()


def new_numeric_code(digits: int = 6) -> str:
    return f"{secrets.randbelow(10**digits):0{digits}d}"


async def issue_code(
    session: AsyncSession,
    settings: Settings,
    *,
    user_id: str,
    purpose: str,
    target: str | None,
    factor_id: str | None = None,
    challenge_id: str | None = None,
) -> str:
    """A fresh code; earlier unused codes for the same purpose and target stop working."""
    now = utcnow()
    stale = update(MfaCode).where(
        MfaCode.user_id == user_id, MfaCode.purpose == purpose, MfaCode.used_at.is_(None)
    )
    if challenge_id is not None:
        stale = stale.where(MfaCode.challenge_id == challenge_id)
    await session.execute(stale.values(used_at=now))
    code = new_numeric_code()
    session.add(
        MfaCode(
            user_id=user_id,
            purpose=purpose,
            target=target,
            factor_id=factor_id,
            challenge_id=challenge_id,
            code_hash=code_digest(settings, user_id, code),
            expires_at=now + timedelta(seconds=settings.mfa_code_ttl_s),
            attempts=0,
        )
    )
    await session.flush()
    return code


async def check_code(
    session: AsyncSession,
    settings: Settings,
    *,
    user_id: str,
    purpose: str,
    code: str,
    target: str | None = None,
    challenge_id: str | None = None,
    raise_on_failure: bool = True,
) -> MfaCode | None:
    """Consume the live code if `code` matches it. A wrong guess spends one of its attempts;
    after the last one the code is dead even if the next guess is right."""
    now = utcnow()
    query = (
        select(MfaCode)
        .where(
            MfaCode.user_id == user_id,
            MfaCode.purpose == purpose,
            MfaCode.live(now),
            MfaCode.attempts < settings.mfa_code_max_attempts,
        )
        .order_by(MfaCode.created_at.desc())
        .limit(1)
        .with_for_update()
    )
    if challenge_id is not None:
        query = query.where(MfaCode.challenge_id == challenge_id)
    if target is not None:
        query = query.where(MfaCode.target == target)
    row = (await session.execute(query)).scalar_one_or_none()
    if row is not None and hmac.compare_digest(row.code_hash, code_digest(settings, user_id, code)):
        row.used_at = now
        await session.flush()
        return row
    if row is not None:
        row.attempts += 1
        await session.flush()
    if raise_on_failure:
        raise InvalidCode()
    return None
