"""The rules of accounts and sign-in: users, one-time tokens, sessions and their rotation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from fastapi.responses import JSONResponse
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from forkyard.config import Settings
from forkyard.identity import schemas
from forkyard.identity.errors import InvalidToken, SessionRevoked
from forkyard.identity.models import (
    ApiKey,
    AuthSession,
    BackupCode,
    MfaFactor,
    OAuthIdentity,
    OneTimeToken,
    SshKey,
    User,
)
from forkyard.identity.passwords import hash_password
from forkyard.kit.clock import clock, utcnow
from forkyard.kit.crypto import random_token, token_hash
from forkyard.kit.errors import RateLimited
from forkyard.tenants.models import Membership, Org


def normalize_email(email: str) -> str:
    local, _, domain = email.strip().partition("@")
    return f"{local}@{domain.lower()}"


def user_out(user: User) -> schemas.User:
    return schemas.User(
        id=user.id,
        email=user.email,
        name=user.name,
        email_verified=user.email_verified_at is not None,
        phone=user.phone,
        is_staff=user.is_staff,
        personal_org_id=user.personal_org_id,
        has_password=user.password_hash is not None,
        created_at=user.created_at,
    )


async def find_user_by_email(session: AsyncSession, email: str) -> User | None:
    return (
        await session.execute(
            select(User).where(
                func.lower(User.email) == normalize_email(email).lower(), User.deleted_at.is_(None)
            )
        )
    ).scalar_one_or_none()


async def create_user(
    session: AsyncSession,
    *,
    email: str,
    password: str | None,
    name: str,
    is_staff: bool = False,
    verified: bool = False,
) -> User:
    """A new user with a personal org they own."""
    now = utcnow()
    user = User(
        email=normalize_email(email),
        name=name.strip(),
        password_hash=await hash_password(password) if password else None,
        is_staff=is_staff,
        email_verified_at=now if verified else None,
        failed_logins=0,
    )
    org = Org(
        name=f"{name.strip() or user.email.split('@')[0]}'s org",
        is_personal=True,
        created_by=user.id,
    )
    user.personal_org_id = org.id
    session.add_all([user, org])
    await session.flush()
    session.add(Membership(org_id=org.id, user_id=user.id, role="owner"))
    await session.flush()
    return user


async def issue_token(
    session: AsyncSession,
    user_id: str,
    purpose: str,
    ttl_s: int,
    data: dict[str, object] | None = None,
) -> str:
    raw = random_token()
    session.add(
        OneTimeToken(
            user_id=user_id,
            purpose=purpose,
            token_hash=token_hash(raw),
            expires_at=utcnow() + timedelta(seconds=ttl_s),
            data=data or {},
        )
    )
    await session.flush()
    return raw


async def consume_token(session: AsyncSession, raw: str, purpose: str) -> OneTimeToken:
    """Mark a single-use token used, atomically: two racing requests cannot both consume it."""
    row = (
        await session.execute(
            OneTimeToken.spend(
                OneTimeToken.token_hash == token_hash(raw), OneTimeToken.purpose == purpose
            )
        )
    ).scalar_one_or_none()
    if row is None:
        raise InvalidToken()
    return row


@dataclass
class IssuedSession:
    session: AuthSession
    access: str
    refresh: str
    csrf: str


def _device_name(user_agent: str | None) -> str | None:
    if not user_agent:
        return None
    ua = user_agent.lower()
    for needle, label in (
        ("iphone", "iPhone"),
        ("android", "Android"),
        ("mac os", "Mac"),
        ("windows", "Windows"),
        ("linux", "Linux"),
        ("curl", "curl"),
        ("python", "Python client"),
        ("httpx", "Python client"),
    ):
        if needle in ua:
            return label
    return user_agent[:40]


def signed_in_response(settings: Settings, user: User, issued: IssuedSession) -> JSONResponse:
    """The answer to every successful sign-in or refresh: the user, the session, its cookies."""
    from forkyard.identity.cookies import set_session_cookies

    body = schemas.LoginResult(
        user=user_out(user), session_id=issued.session.id, mfa_required=False
    )
    response = JSONResponse(body.model_dump(mode="json"))
    set_session_cookies(
        response, settings, access=issued.access, refresh=issued.refresh, csrf=issued.csrf
    )
    return response


def device_of(auth_session: AuthSession) -> str | None:
    return _device_name(auth_session.user_agent)


async def start_session(
    session: AsyncSession,
    settings: Settings,
    user: User,
    *,
    ip: str,
    user_agent: str | None,
    mfa_verified: bool = False,
) -> IssuedSession:
    now = utcnow()
    access, refresh = random_token(), random_token()
    auth_session = AuthSession(
        user_id=user.id,
        access_hash=token_hash(access),
        access_expires_at=now + timedelta(seconds=settings.access_token_ttl_s),
        refresh_hash=token_hash(refresh),
        refresh_expires_at=now + timedelta(seconds=settings.refresh_token_ttl_s),
        previous_refresh_hashes=[],
        ip=ip,
        user_agent=(user_agent or "")[:400] or None,
        last_seen_at=now,
        mfa_verified=mfa_verified,
    )
    session.add(auth_session)
    await session.flush()
    return IssuedSession(auth_session, access, refresh, random_token(18))


async def rotate_refresh(
    session: AsyncSession, settings: Settings, refresh_raw: str
) -> tuple[IssuedSession, User]:
    """Swap a refresh token for new tokens. Presenting an already-rotated token means it was
    copied: the whole session is revoked and both holders must sign in again."""
    now = utcnow()
    presented = token_hash(refresh_raw)
    auth_session = (
        await session.execute(
            select(AuthSession).where(AuthSession.refresh_hash == presented).with_for_update()
        )
    ).scalar_one_or_none()
    if auth_session is None:
        reused = (
            await session.execute(
                select(AuthSession).where(AuthSession.previous_refresh_hashes.contains([presented]))
            )
        ).scalar_one_or_none()
        if reused is not None and reused.revoked_at is None:
            reused.revoked_at = now
            reused.revoked_reason = "refresh_token_reuse"
            await session.flush()
        raise SessionRevoked("This refresh token was already used; sign in again.")
    user = await session.get(User, auth_session.user_id)
    if (
        auth_session.revoked_at is not None
        or auth_session.refresh_expires_at <= now
        or user is None
        or user.deleted_at is not None
    ):
        raise SessionRevoked()
    access, refresh = random_token(), random_token()
    auth_session.previous_refresh_hashes = [*auth_session.previous_refresh_hashes[-20:], presented]
    auth_session.refresh_hash = token_hash(refresh)
    auth_session.access_hash = token_hash(access)
    auth_session.access_expires_at = now + timedelta(seconds=settings.access_token_ttl_s)
    auth_session.last_seen_at = now
    await session.flush()
    return IssuedSession(auth_session, access, refresh, random_token(18)), user


async def revoke_sessions(
    session: AsyncSession, user_id: str, *, keep: str | None = None, reason: str
) -> int:
    stmt = (
        update(AuthSession)
        .where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=utcnow(), revoked_reason=reason)
    )
    if keep:
        stmt = stmt.where(AuthSession.id != keep)
    result = await session.execute(stmt)
    return int(getattr(result, "rowcount", 0) or 0)


async def claim_address(
    session: AsyncSession,
    user: User,
    *,
    reason: str,
) -> bool:
    """The address's owner just proved control of it (a link that reached the mailbox, or a
    provider that vouches for it). If the account was never verified, whoever signed it up may
    be someone else (pre-hijacking): everything they set up stops working. Their password,
    sessions, API keys, second factors, SSH keys, phone, linked sign-ins and pending links all
    go, and the owner starts clean. True when that happened."""
    if user.email_verified_at is not None:
        return False
    now = utcnow()
    user.password_hash = None
    user.phone = None
    user.phone_verified_at = None
    user.failed_logins = 0
    await revoke_sessions(session, user.id, reason=reason)
    await session.execute(
        update(ApiKey)
        .where(ApiKey.created_by == user.id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    await session.execute(delete(MfaFactor).where(MfaFactor.user_id == user.id))
    await session.execute(delete(BackupCode).where(BackupCode.user_id == user.id))
    await session.execute(delete(SshKey).where(SshKey.user_id == user.id))
    await session.execute(delete(OAuthIdentity).where(OAuthIdentity.user_id == user.id))
    await session.execute(
        update(OneTimeToken)
        .where(OneTimeToken.user_id == user.id, OneTimeToken.used_at.is_(None))
        .values(used_at=now)
    )
    user.email_verified_at = now
    user.updated_at = now
    await session.flush()
    return True


class LoginThrottle:
    """Slows repeated failures per account and per IP with growing delays. Keyed by the email
    as typed, so a registered and an unregistered address behave exactly alike."""

    def __init__(
        self, free_failures: int = 3, max_delay_s: int = 900, max_keys: int = 100_000
    ) -> None:
        self.max_keys = max_keys
        self.free_failures = free_failures
        self.max_delay_s = max_delay_s
        self._failures: dict[str, tuple[int, float]] = {}

    def _delay(self, count: int, free: int) -> float:
        return 0.0 if count < free else float(min(2 ** (count - free), self.max_delay_s))

    def check(self, *keys_and_free: tuple[str, int]) -> None:
        now = clock.monotonic()
        for key, free in keys_and_free:
            count, last = self._failures.get(key, (0, 0.0))
            wait = last + self._delay(count, free) - now
            if wait > 0:
                raise RateLimited(
                    int(wait) + 1, "Too many failed sign-ins; wait before trying again."
                )

    def failed(self, *keys: str) -> None:
        now = clock.monotonic()
        if len(self._failures) > self.max_keys:
            # Bounded memory without a reset anyone can buy with a flood of made-up addresses:
            # the keys with the fewest failures go first, a throttled account's count stays.
            by_count = sorted(self._failures.items(), key=lambda kv: kv[1][0])
            for key, _ in by_count[: max(1, self.max_keys // 10)]:
                del self._failures[key]
        for key in keys:
            count, _ = self._failures.get(key, (0, 0.0))
            self._failures[key] = (count + 1, now)

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)

    def reset(self) -> None:
        self._failures.clear()


login_throttle = LoginThrottle()
