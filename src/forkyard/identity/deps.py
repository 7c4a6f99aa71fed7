"""Who is calling: resolves the principal once per request (API key or cookie session), then
applies the CSRF check, the org's IP allowlist and the per-principal rate limit."""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, Request
from sqlalchemy import bindparam, false, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from forkyard.config import Settings
from forkyard.db.engine import plain_sql
from forkyard.db.session import DbSession, database
from forkyard.identity.cookies import ACCESS_COOKIE, CSRF_COOKIE, SUDO_COOKIE
from forkyard.identity.errors import CookieSessionRequired
from forkyard.identity.key_cache import KeyGrant, key_cache
from forkyard.identity.models import ApiKey, AuthSession, SudoGrant, User
from forkyard.identity.principal import ROLE_SCOPES, Principal
from forkyard.kit.clock import utcnow
from forkyard.kit.crypto import constant_time_equal, token_hash
from forkyard.kit.errors import Forbidden, SudoRequired, Unauthenticated
from forkyard.kit.http import client_ip
from forkyard.kit.ratelimit import limiter
from forkyard.tenants.models import IpAllowlistEntry
from forkyard.tenants.queries import allowlist_of, role_in

# Writing last-use stamps on every request would turn each read into a write.
TOUCH_EVERY = timedelta(seconds=60)
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


class CsrfFailed(Forbidden):
    code = "csrf_failed"
    message = "Cookie-authenticated writes need an allowed Origin or a matching X-CSRF-Token."


class IpNotAllowed(Forbidden):
    code = "ip_not_allowed"
    message = "This org's IP allowlist does not include your address."


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def anonymous_limit(bucket: str, per_minute: int | None = None) -> Any:
    """Per-IP rate limit for routes a stranger can call (sign-up, sign-in, the MFA challenge,
    emailed links, OAuth), as a route dependency."""

    async def limit(request: Request) -> None:
        settings = settings_of(request)
        ip = client_ip(request, settings.trusted_proxies)
        limiter.hit(f"anon:{bucket}:{ip}", per_minute or settings.rate_limit_anonymous_per_min)

    return Depends(limit)


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def check_csrf(request: Request, settings: Settings) -> None:
    if request.method in SAFE_METHODS:
        return
    origin = request.headers.get("origin")
    if origin:
        allowed = {_origin_of(settings.public_url), _origin_of(str(request.base_url))}
        allowed.update(_origin_of(o) for o in settings.csrf_trusted_origins)
        if origin.lower() in allowed:
            return
        raise CsrfFailed()
    header = request.headers.get("x-csrf-token")
    cookie = request.cookies.get(CSRF_COOKIE)
    if header and cookie and constant_time_equal(header, cookie):
        return
    raise CsrfFailed()


def ip_in_allowlist(ip: str, cidrs: list[str]) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(c, strict=False) for c in cidrs)


def _api_key_statements() -> tuple[str, str]:
    """The key, its creator and its org's allowlist in one statement (the columns of a
    KeyGrant, in order), and the last-use stamp: on the hot path, so on a plain connection
    (ADR 0008), and the lookup only when the key cache cannot answer (ADR 0008)."""
    # Correlated to the key's own org (a join of two columns, not a tenant's lookup by id).
    allowlist = (
        select(func.array_agg(IpAllowlistEntry.cidr))
        .where(IpAllowlistEntry.org_id == ApiKey.org_id)
        .scalar_subquery()
    )
    columns = (
        ApiKey.id, ApiKey.org_id, ApiKey.created_by, ApiKey.scopes, ApiKey.revoked_at,
        ApiKey.expires_at, ApiKey.last_used_at, User.deleted_at,
        func.coalesce(User.is_staff, false()), User.email_verified_at.is_not(None), allowlist,
    )  # fmt: skip
    lookup = (
        select(*columns)
        .outerjoin(User, User.id == ApiKey.created_by)
        .where(ApiKey.key_hash == bindparam("p_key_hash"))
    )
    touch = (
        update(ApiKey)
        .where(ApiKey.id == bindparam("p_id"))
        .values(last_used_at=bindparam("p_now"), last_used_ip=bindparam("p_ip"))
    )
    return plain_sql(lookup), plain_sql(touch)


API_KEY_LOOKUP, API_KEY_TOUCH = _api_key_statements()


async def _grant_of(request: Request, key_hash: str) -> KeyGrant | None:
    """The key as the cache or the database has it (None: no such key)."""
    grant = key_cache.get(key_hash)
    if grant is not None:
        return grant
    generation = key_cache.generation
    row = await database(request).plain(API_KEY_LOOKUP, {"p_key_hash": key_hash})
    if row is None:
        return None
    grant = KeyGrant(*row)
    grant.allowlist = list(grant.allowlist or [])  # array_agg of no rows is NULL
    key_cache.put(key_hash, grant, generation)
    return grant


async def _principal_from_api_key(
    request: Request, raw_key: str, ip: str
) -> tuple[Principal, list[str]]:
    grant = await _grant_of(request, token_hash(raw_key))
    now = utcnow()
    if (
        grant is None
        or grant.revoked_at is not None
        or (grant.expires_at is not None and grant.expires_at <= now)
        or grant.creator_deleted_at is not None
    ):
        raise Unauthenticated("The API key is not valid, or was revoked or expired.")
    if grant.last_used_at is None or now - grant.last_used_at > TOUCH_EVERY:
        grant.last_used_at = now
        await database(request).plain(
            API_KEY_TOUCH, {"p_id": grant.key_id, "p_now": now, "p_ip": ip}
        )
    principal = Principal(
        kind="api_key",
        user_id=grant.created_by,
        org_id=grant.org_id,
        role=None,
        scopes=frozenset(grant.scopes),
        api_key_id=grant.key_id,
        is_staff=grant.creator_is_staff and "admin" in grant.scopes,
        email_verified=grant.creator_verified,
        ip=ip,
        user_agent=request.headers.get("user-agent"),
    )
    return principal, grant.allowlist


async def _principal_from_cookie(
    request: Request, session: AsyncSession, access: str, ip: str, settings: Settings
) -> tuple[Principal, list[str]]:
    now = utcnow()
    row = (
        await session.execute(
            select(AuthSession, User)
            .join(User, User.id == AuthSession.user_id)
            .where(AuthSession.access_hash == token_hash(access))
        )
    ).one_or_none()
    if row is None:
        raise Unauthenticated("Your session has ended; sign in again.")
    auth_session, user = row
    if (
        auth_session.revoked_at is not None
        or auth_session.access_expires_at <= now
        or user.deleted_at is not None
    ):
        raise Unauthenticated("Your session has ended; sign in again.")
    check_csrf(request, settings)
    if now - auth_session.last_seen_at > TOUCH_EVERY:
        await session.execute(
            update(AuthSession).where(AuthSession.id == auth_session.id).values(last_seen_at=now)
        )
    org_id = request.headers.get("x-forkyard-org") or user.personal_org_id
    role = None
    if org_id:
        role = await role_in(session, org_id, user.id)
        if role is None and request.headers.get("x-forkyard-org"):
            # An org the caller is not in is one they cannot see: 404, never 403 (API.md).
            from forkyard.kit.errors import NotFound

            raise NotFound.of("Org", org_id)
    cidrs: list[str] = []
    if role and org_id:
        cidrs = await allowlist_of(session, org_id)
    principal = Principal(
        kind="user",
        user_id=user.id,
        org_id=org_id if role else None,
        role=role,
        scopes=ROLE_SCOPES.get(role or "", frozenset()),
        session_id=auth_session.id,
        is_staff=user.is_staff,
        email_verified=user.email_verified_at is not None,
        via_cookie=True,
        ip=ip,
        user_agent=request.headers.get("user-agent"),
    )
    return principal, cidrs


async def get_principal(request: Request) -> Principal:
    """Authenticate the request or refuse it with 401. Every non-public route depends on this.
    It takes no request session: an API-key request (the hot path) needs none, and a route that
    does open one has it to itself."""
    settings = settings_of(request)
    ip = client_ip(request, settings.trusted_proxies)
    authorization = request.headers.get("authorization", "")
    if authorization:
        scheme, _, credential = authorization.partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            raise Unauthenticated("Use `Authorization: Bearer <api key>`.")
        principal, cidrs = await _principal_from_api_key(request, credential.strip(), ip)
    elif access := request.cookies.get(ACCESS_COOKIE):
        async with database(request).transaction() as session:
            principal, cidrs = await _principal_from_cookie(request, session, access, ip, settings)
    else:
        raise Unauthenticated()
    if (
        principal.kind == "api_key"
        and request.method not in SAFE_METHODS
        and not principal.can("write")
    ):
        # Deny by default: a read-only key changes nothing, whichever route it reaches.
        raise Forbidden("This API key is read-only.", details={"scope": "write"})
    limiter.hit(f"p:{principal.rate_key}", settings.rate_limit_principal_per_min)
    if principal.org_id and cidrs and not ip_in_allowlist(ip, cidrs):
        raise IpNotAllowed()
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def require_scope(scope: str) -> Any:
    async def check(principal: CurrentPrincipal) -> Principal:
        if not principal.can(scope):
            raise Forbidden(f"This needs the `{scope}` scope.", details={"scope": scope})
        return principal

    return check


def require_org_scope(scope: str) -> Any:
    async def check(principal: CurrentPrincipal) -> Principal:
        if principal.org_id is None:
            raise Forbidden("This request does not act for an org.")
        if not principal.can(scope):
            raise Forbidden(f"This needs the `{scope}` scope.", details={"scope": scope})
        return principal

    return check


# What each dependency demands, shown in the reference as `x-forkyard-auth` (identity/routing.py).
ACCESS_ATTR = "forkyard_access"


async def require_session(principal: CurrentPrincipal) -> Principal:
    """Credentials, MFA factors, sessions, contact details and the account's data: a signed-in
    browser session only. No API key reaches these, whatever its scopes: a leaked key must
    not become a takeover of the person who made it."""
    if principal.kind != "user" or principal.session_id is None or principal.user_id is None:
        raise CookieSessionRequired()
    return principal


async def require_account(principal: CurrentPrincipal) -> Principal:
    """The creator's own account (profile, SSH keys, new keys): a signed-in session, or an API
    key given the explicit `account` scope."""
    if principal.user_id is None:
        raise CookieSessionRequired()
    if principal.kind != "user" and not principal.can("account"):
        raise Forbidden(
            "This acts on the key creator's account: sign in, or use a key with the `account`"
            " scope.",
            details={"scope": "account"},
        )
    return principal


setattr(require_session, ACCESS_ATTR, "session")
setattr(require_account, ACCESS_ATTR, "account")


async def require_user(principal: CurrentPrincipal) -> Principal:
    if principal.user_id is None:
        raise Forbidden("This route acts for a user.")
    return principal


async def require_staff(principal: CurrentPrincipal) -> Principal:
    """Staff only; everyone else sees 404."""
    if not principal.is_staff:
        # Staff routes are invisible to everyone else.
        from forkyard.kit.errors import NotFound

        raise NotFound()
    return principal


async def require_sudo(
    request: Request,
    session: DbSession,
    principal: Annotated[Principal, Depends(require_session)],
) -> Principal:
    """Destructive routes need a fresh password confirmation bound to this session."""
    raw = request.cookies.get(SUDO_COOKIE)
    if not raw or principal.session_id is None:
        raise SudoRequired()
    grant = (
        await session.execute(
            select(SudoGrant).where(
                SudoGrant.token_hash == token_hash(raw),
                SudoGrant.session_id == principal.session_id,
                SudoGrant.expires_at > utcnow(),
            )
        )
    ).scalar_one_or_none()
    if grant is None:
        raise SudoRequired()
    return principal


setattr(require_sudo, ACCESS_ATTR, "sudo")
setattr(require_staff, ACCESS_ATTR, "staff")
setattr(get_principal, ACCESS_ATTR, "org")


Reader = Annotated[Principal, Depends(require_org_scope("read"))]
Writer = Annotated[Principal, Depends(require_org_scope("write"))]
OrgAdmin = Annotated[Principal, Depends(require_org_scope("admin"))]
UserPrincipal = Annotated[Principal, Depends(require_user)]
StaffPrincipal = Annotated[Principal, Depends(require_staff)]
SudoPrincipal = Annotated[Principal, Depends(require_sudo)]
SessionPrincipal = Annotated[Principal, Depends(require_session)]
AccountPrincipal = Annotated[Principal, Depends(require_account)]
