"""Password hashing (argon2id) and the password policy."""

from __future__ import annotations

import asyncio
from functools import lru_cache
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from forkyard.kit.errors import ValidationFailed

_hasher = PasswordHasher()  # argon2id with the library's RFC 9106 low-memory profile
# Verified against when the account does not exist, so both paths cost the same.
_DUMMY_HASH = _hasher.hash("forkyard-timing-equaliser-not-a-password")
_TRAILING_NOISE = "0123456789!@#$%^&*.?_-+= "


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    path = Path(__file__).parent / "data" / "common-passwords.txt"
    return frozenset(
        line.strip().lower()
        for line in path.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )


def password_problem(password: str, min_length: int, *, email: str | None = None) -> str | None:
    if len(password) < min_length:
        return f"Use at least {min_length} characters."
    if len(password) > 256:
        return "Use at most 256 characters."
    lowered = password.lower()
    common = common_passwords()
    stripped = lowered.rstrip(_TRAILING_NOISE)
    if lowered in common or (len(stripped) >= 6 and stripped in common):
        return "This password is too common; pick another."
    if email and lowered.startswith(email.split("@")[0].lower()) and len(email.split("@")[0]) >= 4:
        return "Do not base the password on your email address."
    return None


def check_password_policy(password: str, min_length: int, *, email: str | None = None) -> None:
    problem = password_problem(password, min_length, email=email)
    if problem:
        raise ValidationFailed(
            problem, details={"fields": [{"loc": ["body", "password"], "msg": problem}]}
        )


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


def _verify(stored: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored or _DUMMY_HASH, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(stored: str | None, password: str) -> bool:
    """True when `password` matches; with no stored hash it still spends the same time."""
    return await asyncio.to_thread(_verify, stored, password)
