"""Sign-up, sign-in, tokens by email, the account itself and sudo (tag auth)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import select

from forkyard.audit.service import record, record_for_user
from forkyard.db.session import DbSession
from forkyard.events import emit
from forkyard.identity import schemas
from forkyard.identity.cookies import (
    ACCESS_COOKIE,
    REFRESH_COOKIE,
    SIGNUP_COOKIE,
    clear_auth_cookies,
    set_signup_cookie,
    set_sudo_cookie,
)
from forkyard.identity.deps import (
    CurrentPrincipal,
    SudoPrincipal,
    anonymous_limit,
    check_csrf,
    require_account,
    require_session,
    settings_of,
)
from forkyard.identity.errors import (
    CookieSessionRequired,
    InvalidCredentials,
    PasswordAlreadySet,
)
from forkyard.identity.events import UserPasswordChanged
from forkyard.identity.models import AuthSession, SudoGrant, User
from forkyard.identity.passwords import check_password_policy, hash_password, verify_password
from forkyard.identity.routing import protected_router, public_router
from forkyard.identity.service import (
    claim_address,
    consume_token,
    create_user,
    find_user_by_email,
    issue_token,
    login_throttle,
    normalize_email,
    revoke_sessions,
    rotate_refresh,
    signed_in_response,
    user_out,
)
from forkyard.kit.clock import utcnow
from forkyard.kit.crypto import constant_time_equal, random_token, token_hash
from forkyard.kit.errors import ForkyardError, NotFound
from forkyard.kit.http import client_ip
from forkyard.kit.ratelimit import limiter
from forkyard.mail.sender import queue_email

public = public_router("auth", prefix="/v1/auth")
router = protected_router("auth", prefix="/v1/auth")


def _ip(request: Request) -> str:
    return client_ip(request, settings_of(request).trusted_proxies)


async def _current_user(session: DbSession, principal: CurrentPrincipal) -> User:
    user = await session.get(User, principal.user_id) if principal.user_id else None
    if user is None or user.deleted_at is not None:
        raise NotFound("No account is attached to this credential.")
    return user


CurrentUser = Annotated[User, Depends(_current_user)]

SIGNUP_MESSAGE = "Check your inbox: we sent a link to verify your address. You can sign in now."


@public.post(
    "/signup",
    status_code=201,
    response_model=schemas.Message,
    dependencies=[anonymous_limit("signup", 10)],
)
async def signup(
    body: schemas.SignupRequest, request: Request, response: Response, session: DbSession
) -> schemas.Message:
    """Create an account and its personal org, and email a verification link."""
    settings = settings_of(request)
    email = normalize_email(body.email)
    check_password_policy(body.password, settings.password_min_length, email=email)
    existing = await find_user_by_email(session, email)
    if existing is not None:
        # Same answer and similar cost as a new signup; the owner hears about the attempt.
        await hash_password(body.password)
        await queue_email(
            session,
            existing.email,
            "Someone tried to sign up with your address",
            "Someone tried to create a Forkyard account with this address, which already has one.\n"
            f"If it was you, sign in or reset your password: {settings.public_url}/v1/auth/forgot-password\n",
        )
        return schemas.Message(message=SIGNUP_MESSAGE)
    user = await create_user(session, email=email, password=body.password, name=body.name)
    # The link keeps this password only when opened in this browser (verify_email).
    nonce = random_token()
    set_signup_cookie(response, settings, nonce)
    token = await issue_token(
        session,
        user.id,
        "verify_email",
        settings.email_token_ttl_s,
        {"email": user.email, "browser": token_hash(nonce)},
    )
    await queue_email(
        session,
        user.email,
        "Verify your email for Forkyard",
        f"Welcome to Forkyard.\n\nVerify your address: {settings.public_url}/v1/auth/verify-email?token={token}\n",
    )
    await record_for_user(session, request, user, "user.signup")
    return schemas.Message(message=SIGNUP_MESSAGE)


@public.get(
    "/verify-email",
    response_model=schemas.VerifyEmailResult,
    dependencies=[anonymous_limit("verify-email")],
)
async def verify_email(
    request: Request,
    session: DbSession,
    token: Annotated[str, Query(min_length=10, max_length=200)],
) -> schemas.VerifyEmailResult:
    """Confirm an email address with the emailed token.

    The link proves who reads the mailbox, not who chose the password. Opened in the browser
    that signed up, the account is theirs as it is; opened anywhere else, the address's owner
    may be someone other than whoever signed up with it, so the account is handed to the owner
    clean: the sign-up password, sessions, keys and factors stop working, and they sign in by
    magic link or set a password with forgot-password."""
    row = await consume_token(session, token, "verify_email")
    user = await session.get(User, row.user_id)
    if user is None or user.deleted_at is not None or user.email != row.data.get("email"):
        from forkyard.identity.errors import InvalidToken

        raise InvalidToken()
    nonce = request.cookies.get(SIGNUP_COOKIE) or ""
    same_browser = bool(nonce) and constant_time_equal(
        token_hash(nonce), str(row.data.get("browser", ""))
    )
    if same_browser:
        user.email_verified_at = user.email_verified_at or utcnow()
        claimed = False
    else:
        claimed = await claim_address(session, user, reason="verification_claimed_address")
    await record_for_user(
        session, None, user, "user.email_verified", data={"credentials_reset": claimed}
    )
    return schemas.VerifyEmailResult(
        verified=True, email=user.email, password_kept=user.password_hash is not None
    )


@public.post("/login", response_model=schemas.LoginResult, dependencies=[anonymous_limit("login")])
async def login(body: schemas.LoginRequest, request: Request, session: DbSession) -> JSONResponse:
    """Sign in with email and password; sets the access, refresh and CSRF cookies."""
    settings = settings_of(request)
    ip = _ip(request)
    email_key = f"email:{normalize_email(body.email).lower()}"
    login_throttle.check((email_key, settings.login_failures_before_delay), (f"ip:{ip}", 20))
    user = await find_user_by_email(session, body.email)
    ok = await verify_password(user.password_hash if user else None, body.password)
    if user is None or not ok:
        login_throttle.failed(email_key, f"ip:{ip}")
        if user is not None:
            user.failed_logins += 1
            user.last_failed_login_at = utcnow()
        await record(
            session,
            "auth.login_failed",
            org_id=user.personal_org_id if user else None,
            actor_id=user.id if user else None,
            actor_type="anonymous",
            target_type="user" if user else None,
            target_id=user.id if user else None,
            ip=ip,
            user_agent=request.headers.get("user-agent"),
            data={} if user else {"email_hash": token_hash(email_key)[:16]},
        )
        raise InvalidCredentials(keep_changes=True)  # the failure is recorded all the same
    login_throttle.succeeded(email_key)
    user.failed_logins = 0
    from forkyard.identity.mfa.challenges import challenge_or_sign_in

    # With a confirmed factor: a challenge and no cookies until the second factor passes.
    return await challenge_or_sign_in(session, request, user, method="password")


@public.post(
    "/refresh", response_model=schemas.LoginResult, dependencies=[anonymous_limit("refresh", 60)]
)
async def refresh(request: Request, session: DbSession) -> JSONResponse:
    """Rotate the refresh token; reusing an old one revokes the whole session."""
    settings = settings_of(request)
    raw = request.cookies.get(REFRESH_COOKIE)
    if not raw:
        from forkyard.kit.errors import Unauthenticated

        raise Unauthenticated("No refresh cookie was sent.")
    check_csrf(request, settings)
    try:
        issued, user = await rotate_refresh(session, settings, raw)
    except ForkyardError as exc:
        exc.keep_changes = True  # keep the revocation that reuse detection made
        raise
    return signed_in_response(settings, user, issued)


@public.post("/logout", status_code=204, dependencies=[anonymous_limit("logout", 60)])
async def logout(request: Request, session: DbSession) -> Response:
    """Sign out this browser: revoke its session and clear the cookies."""
    settings = settings_of(request)
    access = request.cookies.get(ACCESS_COOKIE)
    if access:
        check_csrf(request, settings)
        auth_session = (
            await session.execute(
                select(AuthSession).where(AuthSession.access_hash == token_hash(access))
            )
        ).scalar_one_or_none()
        if auth_session is not None and auth_session.revoked_at is None:
            auth_session.revoked_at = utcnow()
            auth_session.revoked_reason = "logout"
            user = await session.get(User, auth_session.user_id)
            if user is not None:
                await record_for_user(
                    session,
                    request,
                    user,
                    "auth.logout",
                    target_type="session",
                    target_id=auth_session.id,
                )
    response = Response(status_code=204)
    clear_auth_cookies(response, settings)
    return response


FORGOT_MESSAGE = "If an account uses that address, we sent it a link to reset the password."


@public.post(
    "/forgot-password", response_model=schemas.Message, dependencies=[anonymous_limit("forgot", 5)]
)
async def forgot_password(
    body: schemas.ForgotPasswordRequest, request: Request, session: DbSession
) -> schemas.Message:
    """Email a password-reset link; the answer is the same whether or not the account exists."""
    settings = settings_of(request)
    user = await find_user_by_email(session, body.email)
    if user is not None:
        token = await issue_token(session, user.id, "reset_password", settings.password_reset_ttl_s)
        await queue_email(
            session,
            user.email,
            "Reset your Forkyard password",
            "Someone asked to reset your password. If it was you, use this link within the hour:\n"
            f"{settings.public_url}/reset-password?token={token}\n\nIf not, ignore this message.\n",
        )
        await record_for_user(
            session,
            request,
            user,
            "auth.password_reset_requested",
            actor="stranger",
        )
    return schemas.Message(message=FORGOT_MESSAGE)


@public.post(
    "/reset-password", response_model=schemas.Message, dependencies=[anonymous_limit("reset", 10)]
)
async def reset_password(
    body: schemas.ResetPasswordRequest, request: Request, session: DbSession
) -> schemas.Message:
    """Set a new password with the emailed token; every session of the account is signed out."""
    settings = settings_of(request)
    row = await consume_token(session, body.token, "reset_password")
    user = await session.get(User, row.user_id)
    if user is None or user.deleted_at is not None:
        from forkyard.identity.errors import InvalidToken

        raise InvalidToken()
    check_password_policy(body.new_password, settings.password_min_length, email=user.email)
    # The emailed token proves the address: an unverified account is claimed by its owner.
    await claim_address(session, user, reason="password_reset_claimed_address")
    user.password_hash = await hash_password(body.new_password)
    user.updated_at = utcnow()
    await revoke_sessions(session, user.id, reason="password_reset")
    await record_for_user(session, request, user, "auth.password_reset")
    await emit(session, UserPasswordChanged.of(user, "reset"))
    return schemas.Message(message="Your password was changed. Sign in with the new one.")


@router.post(
    "/set-password", response_model=schemas.Message, dependencies=[Depends(require_session)]
)
async def set_password(
    body: schemas.SetPasswordRequest,
    request: Request,
    session: DbSession,
    principal: CurrentPrincipal,
    user: CurrentUser,
) -> schemas.Message:
    """Give a password to an account that has none (one created by OAuth or magic link)."""
    if user.password_hash is not None:
        raise PasswordAlreadySet()
    check_password_policy(
        body.new_password, settings_of(request).password_min_length, email=user.email
    )
    user.password_hash = await hash_password(body.new_password)
    user.updated_at = utcnow()
    await record(
        session, "auth.password_set", principal=principal, target_type="user", target_id=user.id
    )
    await emit(session, UserPasswordChanged.of(user, "set"))
    return schemas.Message(message="Password set.")


@router.get("/me", response_model=schemas.User)
async def get_me(user: CurrentUser) -> schemas.User:
    """The signed-in user's account."""
    return user_out(user)


@router.patch("/me", response_model=schemas.User, dependencies=[Depends(require_account)])
async def update_me(body: schemas.UserUpdate, user: CurrentUser) -> schemas.User:
    """Change the account's display name."""
    if body.name is not None:
        user.name = body.name.strip()
        user.updated_at = utcnow()
    return user_out(user)


@router.delete("/me", status_code=204)
async def delete_me(
    request: Request, session: DbSession, principal: SudoPrincipal, user: CurrentUser
) -> Response:
    """Soft-delete the calling user's account (sudo): sessions and keys revoked, memberships
    removed, personal data scrubbed. Clears both auth cookies."""
    from forkyard.identity.account_deletion import delete_account

    await delete_account(session, user, principal)
    response = Response(status_code=204)
    clear_auth_cookies(response, settings_of(request))
    return response


@router.post(
    "/me/password", response_model=schemas.Message, dependencies=[Depends(require_session)]
)
async def change_password(
    body: schemas.ChangePasswordRequest,
    request: Request,
    session: DbSession,
    principal: CurrentPrincipal,
    user: CurrentUser,
) -> schemas.Message:
    """Change the password (the current one is required); other sessions are signed out."""
    if not await verify_password(user.password_hash, body.current_password):
        await record(
            session,
            "auth.password_change_failed",
            principal=principal,
            target_type="user",
            target_id=user.id,
        )
        raise InvalidCredentials("The current password is wrong.", keep_changes=True)
    check_password_policy(
        body.new_password, settings_of(request).password_min_length, email=user.email
    )
    user.password_hash = await hash_password(body.new_password)
    user.updated_at = utcnow()
    await revoke_sessions(session, user.id, keep=principal.session_id, reason="password_changed")
    await record(
        session, "auth.password_changed", principal=principal, target_type="user", target_id=user.id
    )
    # The owner is told by the security notice this event makes (notifications), email included.
    await emit(session, UserPasswordChanged.of(user, "changed"))
    return schemas.Message(message="Password changed. Other sessions were signed out.")


@router.post("/sudo", response_model=schemas.SudoGrantOut, dependencies=[Depends(require_session)])
async def sudo(
    body: schemas.SudoRequest,
    request: Request,
    session: DbSession,
    principal: CurrentPrincipal,
    user: CurrentUser,
) -> JSONResponse:
    """Re-verify the password and mint a 5-minute sudo-grant cookie for destructive routes."""
    settings = settings_of(request)
    if principal.session_id is None:
        raise CookieSessionRequired()
    limiter.hit(f"sudo:{user.id}", 10)
    if not await verify_password(user.password_hash, body.password):
        await record(
            session, "auth.sudo_failed", principal=principal, target_type="user", target_id=user.id
        )
        raise InvalidCredentials("The password is wrong.", keep_changes=True)
    raw = random_token()
    expires = utcnow() + timedelta(seconds=settings.sudo_ttl_s)
    session.add(
        SudoGrant(session_id=principal.session_id, token_hash=token_hash(raw), expires_at=expires)
    )
    await record(
        session,
        "auth.sudo",
        principal=principal,
        target_type="session",
        target_id=principal.session_id,
    )
    response = JSONResponse(schemas.SudoGrantOut(expires_at=expires).model_dump(mode="json"))
    set_sudo_cookie(response, settings, raw)
    return response
