"""Sign-in with GitHub, Google or any OpenID Connect provider, through authlib: authorization
code flow with state and PKCE (S256), the OIDC nonce and ID-token checks (joserfc, authlib's
JOSE library). An identity links to an existing account only when the provider vouches for the
same verified email; otherwise a new account is made. The second factor still applies."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

import httpx
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client
from fastapi import Request
from fastapi.responses import JSONResponse, RedirectResponse
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from pydantic import BaseModel
from sqlalchemy import select

from forkyard.audit.service import record_for_user
from forkyard.config import Settings
from forkyard.db.session import DbSession
from forkyard.identity import schemas
from forkyard.identity.deps import anonymous_limit, settings_of
from forkyard.identity.mfa.challenges import challenge_or_sign_in
from forkyard.identity.models import OAuthIdentity, OAuthState, User
from forkyard.identity.routing import public_router
from forkyard.identity.service import claim_address, create_user, find_user_by_email
from forkyard.kit.clock import utcnow
from forkyard.kit.crypto import constant_time_equal, decrypt, encrypt, random_token, token_hash
from forkyard.kit.errors import BadRequest, NotFound, ServiceUnavailable

public = public_router("auth", prefix="/v1/auth/oauth")

PUBLIC = [
    "/v1/auth/oauth/providers",
    "/v1/auth/oauth/{provider}",
    "/v1/auth/oauth/{provider}/callback",
]
STATE_COOKIE = "fy_oauth_state"
STATE_TTL_S = 600
PURPOSE = "oauth-state"
HTTP_TIMEOUT_S = 10.0


class OAuthFailed(BadRequest):
    code = "oauth_failed"
    message = "Signing in with the provider did not work; try again."


class OAuthStateInvalid(BadRequest):
    code = "oauth_state_invalid"
    message = "This sign-in attempt expired or was not started in this browser; start again."


class OAuthEmailUnverified(BadRequest):
    code = "oauth_email_unverified"
    message = "The provider did not confirm a verified email address for this account."


@dataclass(frozen=True)
class Provider:
    id: str
    name: str
    kind: Literal["oidc", "github"]
    client_id: str
    client_secret: str | None
    issuer: str | None = None  # oidc
    base_url: str | None = None  # github web
    api_url: str | None = None  # github api

    @property
    def scope(self) -> str:
        return "openid email profile" if self.kind == "oidc" else "read:user user:email"


class ProviderOut(BaseModel):
    id: str
    name: str
    type: Literal["oidc", "github"]
    authorize_url: str


class ProviderList(BaseModel):
    data: list[ProviderOut]


def providers(settings: Settings) -> dict[str, Provider]:
    """The providers whose client id is configured."""
    out: dict[str, Provider] = {}
    if settings.oauth_github_client_id:
        out["github"] = Provider(
            "github",
            "GitHub",
            "github",
            settings.oauth_github_client_id,
            settings.oauth_github_client_secret,
            base_url=settings.oauth_github_base_url.rstrip("/"),
            api_url=settings.oauth_github_api_url.rstrip("/"),
        )
    if settings.oauth_google_client_id:
        out["google"] = Provider(
            "google",
            "Google",
            "oidc",
            settings.oauth_google_client_id,
            settings.oauth_google_client_secret,
            issuer=settings.oauth_google_issuer,
        )
    if settings.oauth_oidc_client_id and settings.oauth_oidc_issuer:
        out["oidc"] = Provider(
            "oidc",
            settings.oauth_oidc_name,
            "oidc",
            settings.oauth_oidc_client_id,
            settings.oauth_oidc_client_secret,
            issuer=settings.oauth_oidc_issuer.rstrip("/"),
        )
    return out


_discovery_cache: dict[str, tuple[float, dict[str, Any]]] = {}


async def _discover(issuer: str) -> dict[str, Any]:
    cached = _discovery_cache.get(issuer)
    if cached and cached[0] > time.monotonic():
        return cached[1]
    try:
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S) as http:
            r = await http.get(f"{issuer}/.well-known/openid-configuration")
            r.raise_for_status()
            meta = r.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise ServiceUnavailable("The sign-in provider cannot be reached.") from exc
    if meta.get("issuer") != issuer:
        raise ServiceUnavailable("The provider's discovery document names another issuer.")
    _discovery_cache[issuer] = (time.monotonic() + 3600, meta)
    return meta


async def _endpoints(provider: Provider) -> tuple[str, str]:
    if provider.kind == "github":
        return (
            f"{provider.base_url}/login/oauth/authorize",
            f"{provider.base_url}/login/oauth/access_token",
        )
    assert provider.issuer is not None
    meta = await _discover(provider.issuer)
    return str(meta["authorization_endpoint"]), str(meta["token_endpoint"])


def _redirect_uri(settings: Settings, provider: Provider) -> str:
    return f"{settings.public_url.rstrip('/')}/v1/auth/oauth/{provider.id}/callback"


def _client(settings: Settings, provider: Provider) -> AsyncOAuth2Client:
    return AsyncOAuth2Client(
        client_id=provider.client_id,
        client_secret=provider.client_secret,
        scope=provider.scope,
        redirect_uri=_redirect_uri(settings, provider),
        code_challenge_method="S256",
        timeout=HTTP_TIMEOUT_S,
    )


def _provider(settings: Settings, provider: str) -> Provider:
    found = providers(settings).get(provider)
    if found is None:
        raise NotFound(f"No sign-in provider {provider!r} is configured.")
    return found


@public.get(
    "/providers", response_model=ProviderList, dependencies=[anonymous_limit("oauth-list", 60)]
)
async def list_providers(request: Request) -> ProviderList:
    """The OAuth and OpenID Connect providers this server offers for sign-in."""
    return ProviderList(
        data=[
            ProviderOut(id=p.id, name=p.name, type=p.kind, authorize_url=f"/v1/auth/oauth/{p.id}")
            for p in providers(settings_of(request)).values()
        ]
    )


@public.get(
    "/{provider}",
    status_code=302,
    response_class=RedirectResponse,
    dependencies=[anonymous_limit("oauth-start", 20)],
)
async def start_oauth(provider: str, request: Request, session: DbSession) -> RedirectResponse:
    """Redirect to the provider's consent page (with state and PKCE)."""
    settings = settings_of(request)
    found = _provider(settings, provider)
    authorize_url, _ = await _endpoints(found)
    state, verifier, nonce = random_token(), generate_token(64), random_token()
    session.add(
        OAuthState(
            state_hash=token_hash(state),
            provider=found.id,
            secrets_enc=encrypt(
                settings.secret_key, PURPOSE, json.dumps({"verifier": verifier, "nonce": nonce})
            ),
            expires_at=utcnow() + timedelta(seconds=STATE_TTL_S),
        )
    )
    extra = {"nonce": nonce} if found.kind == "oidc" else {}
    async with _client(settings, found) as client:
        url, _ = client.create_authorization_url(
            authorize_url, state=state, code_verifier=verifier, **extra
        )
    response = RedirectResponse(url, status_code=302)
    # Binds the callback to this browser: a callback without the matching cookie is refused,
    # so nobody can sign a victim into the attacker's account (login CSRF). Lax, because the
    # return from the provider is a cross-site top-level navigation.
    response.set_cookie(
        STATE_COOKIE,
        state,
        max_age=STATE_TTL_S,
        httponly=True,
        secure=bool(settings.cookie_secure),
        samesite="lax",
        path="/v1/auth/oauth",
    )
    return response


@dataclass
class ProviderAccount:
    subject: str
    email: str | None
    email_verified: bool
    name: str


async def _oidc_account(provider: Provider, token: dict[str, Any], nonce: str) -> ProviderAccount:
    assert provider.issuer is not None
    meta = await _discover(provider.issuer)
    id_token = token.get("id_token")
    if not id_token:
        raise OAuthFailed("The provider returned no ID token.")
    try:
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S) as http:
            r = await http.get(meta["jwks_uri"])
            r.raise_for_status()
            keys = KeySet.import_key_set(r.json())
        decoded = jwt.decode(id_token, keys, algorithms=["RS256", "ES256", "PS256", "EdDSA"])
        jwt.JWTClaimsRegistry(
            now=int(utcnow().timestamp()),
            leeway=60,
            iss={"essential": True, "value": provider.issuer},
            aud={"essential": True, "value": provider.client_id},
            sub={"essential": True},
            exp={"essential": True},
            nonce={"essential": True, "value": nonce},
        ).validate(decoded.claims)
    except (JoseError, httpx.HTTPError, ValueError, KeyError) as exc:
        raise OAuthFailed("The provider's ID token did not verify.") from exc
    claims = decoded.claims
    email, verified = claims.get("email"), claims.get("email_verified")
    if (not email or verified is None) and meta.get("userinfo_endpoint"):
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S) as http:
            r = await http.get(
                meta["userinfo_endpoint"],
                headers={"Authorization": f"Bearer {token['access_token']}"},
            )
        if r.status_code == 200 and r.json().get("sub") == claims["sub"]:
            info = r.json()
            email, verified = info.get("email"), info.get("email_verified")
    return ProviderAccount(
        subject=str(claims["sub"]),
        email=str(email) if email else None,
        email_verified=verified is True or verified == "true",
        name=str(claims.get("name") or ""),
    )


async def _github_account(provider: Provider, token: dict[str, Any]) -> ProviderAccount:
    headers = {
        "Authorization": f"Bearer {token['access_token']}",
        "Accept": "application/vnd.github+json",
    }
    try:
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S, headers=headers) as http:
            user = (await http.get(f"{provider.api_url}/user")).raise_for_status().json()
            emails = (await http.get(f"{provider.api_url}/user/emails")).raise_for_status().json()
    except (httpx.HTTPError, ValueError) as exc:
        raise OAuthFailed("GitHub did not answer as expected.") from exc
    primary = next((e for e in emails if e.get("primary")), None)
    return ProviderAccount(
        subject=str(user["id"]),
        email=primary.get("email") if primary else None,
        email_verified=bool(primary and primary.get("verified")),
        name=str(user.get("name") or user.get("login") or ""),
    )


async def _account_for(session: DbSession, provider: Provider, account: ProviderAccount) -> User:
    identity = (
        await session.execute(
            select(OAuthIdentity).where(
                OAuthIdentity.provider == provider.id, OAuthIdentity.subject == account.subject
            )
        )
    ).scalar_one_or_none()
    if identity is not None:
        user = await session.get(User, identity.user_id)
        if user is not None and user.deleted_at is None:
            identity.last_login_at = utcnow()
            return user
    if not account.email or not account.email_verified:
        raise OAuthEmailUnverified()
    user = await find_user_by_email(session, account.email)
    if user is None:
        user = await create_user(
            session, email=account.email, password=None, name=account.name, verified=True
        )
        action = "user.signup_oauth"
    else:
        # Whoever signed up with this address never proved it; the provider just did. What
        # they set up could belong to someone else (pre-hijacking), so it stops working.
        await claim_address(session, user, reason="oauth_took_over_unverified")
        action = "user.oauth_linked"
    session.add(
        OAuthIdentity(
            user_id=user.id,
            provider=provider.id,
            subject=account.subject,
            email=account.email,
            last_login_at=utcnow(),
        )
    )
    await session.flush()
    await record_for_user(session, None, user, action, data={"provider": provider.id})
    return user


@public.get(
    "/{provider}/callback",
    response_model=schemas.LoginResult,
    dependencies=[anonymous_limit("oauth-callback", 20)],
)
async def oauth_callback(
    provider: str,
    request: Request,
    session: DbSession,
    code: str | None = None,
    state: str | None = None,
    error: str | None = None,
) -> JSONResponse:
    """Finish the provider's redirect: sign in (linking or creating the account) or answer
    with an MFA challenge."""
    settings = settings_of(request)
    found = _provider(settings, provider)
    if error:
        raise OAuthFailed("The provider refused the sign-in.", details={"error": error[:100]})
    cookie = request.cookies.get(STATE_COOKIE)
    if not code or not state or not cookie or not constant_time_equal(cookie, state):
        raise OAuthStateInvalid()
    row = (
        await session.execute(
            OAuthState.spend(
                OAuthState.state_hash == token_hash(state), OAuthState.provider == found.id
            )
        )
    ).scalar_one_or_none()
    if row is None:
        raise OAuthStateInvalid()
    secrets = json.loads(decrypt(settings.secret_key, PURPOSE, row.secrets_enc))
    _, token_url = await _endpoints(found)
    try:
        async with _client(settings, found) as client:
            token = await client.fetch_token(
                token_url,
                grant_type="authorization_code",
                code=code,
                code_verifier=secrets["verifier"],
                headers={"Accept": "application/json"},
            )
    except Exception as exc:  # authlib raises its own OAuthError, httpx errors, JSON errors
        raise OAuthFailed("The provider did not accept the authorization code.") from exc
    if "access_token" not in token:
        raise OAuthFailed("The provider returned no access token.")
    if found.kind == "oidc":
        account = await _oidc_account(found, dict(token), secrets["nonce"])
    else:
        account = await _github_account(found, dict(token))
    user = await _account_for(session, found, account)
    response = await challenge_or_sign_in(session, request, user, method=f"oauth:{found.id}")
    response.delete_cookie(STATE_COOKIE, path="/v1/auth/oauth")
    return response
