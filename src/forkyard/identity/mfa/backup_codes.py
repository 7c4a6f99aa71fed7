"""Backup codes: ten random codes shown once, stored as keyed hashes, each usable once."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from forkyard.config import Settings
from forkyard.identity.models import BackupCode
from forkyard.kit.clock import utcnow

COUNT = 10
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i


def _normalize(code: str) -> str:
    return code.strip().lower().replace("-", "").replace(" ", "")


def looks_like_backup_code(code: str) -> bool:
    value = _normalize(code)
    return len(value) == 10 and all(c in _ALPHABET for c in value)


def _digest(settings: Settings, user_id: str, code: str) -> str:
    key = hashlib.sha256(f"backup-code:{settings.secret_key}".encode()).digest()
    return hmac.new(key, f"{user_id}:{_normalize(code)}".encode(), hashlib.sha256).hexdigest()


async def regenerate(session: AsyncSession, settings: Settings, user_id: str) -> list[str]:
    """Replace every backup code of the user; the plain codes are returned once, never stored."""
    await session.execute(delete(BackupCode).where(BackupCode.user_id == user_id))
    codes = []
    for _ in range(COUNT):
        raw = "".join(secrets.choice(_ALPHABET) for _ in range(10))
        codes.append(f"{raw[:5]}-{raw[5:]}")
        session.add(BackupCode(user_id=user_id, code_hash=_digest(settings, user_id, raw)))
    await session.flush()
    return codes


async def remaining(session: AsyncSession, user_id: str) -> int:
    rows = await session.execute(
        select(BackupCode.id).where(BackupCode.user_id == user_id, BackupCode.used_at.is_(None))
    )
    return len(rows.all())


async def consume(session: AsyncSession, settings: Settings, user_id: str, code: str) -> bool:
    if not looks_like_backup_code(code):
        return False
    result = await session.execute(
        update(BackupCode)
        .where(
            BackupCode.user_id == user_id,
            BackupCode.code_hash == _digest(settings, user_id, code),
            BackupCode.used_at.is_(None),
        )
        .values(used_at=utcnow())
    )
    return bool(getattr(result, "rowcount", 0))
