"""Passing a sign-in challenge (public: the challenge token is the credential): its state,
sending a code, verifying a code or backup code, or a passkey ceremony."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import Query, Request
from fastapi.responses import JSONResponse

from forkyard.db.session import DbSession
from forkyard.identity.deps import anonymous_limit, settings_of
from forkyard.identity.mfa import backup_codes, totp, webauthn
from forkyard.identity.mfa import schemas as s
from forkyard.identity.mfa.challenges import (
    confirmed_factors,
    factor_kinds,
    fail_attempt,
    load_challenge,
    sign_in,
)
from forkyard.identity.mfa.codes import check_code, issue_code
from forkyard.identity.mfa.errors import (
    FactorUnavailable,
    InvalidCode,
    TooManyCodes,
    WebauthnFailed,
)
from forkyard.identity.mfa.routes.common import hint
from forkyard.identity.mfa.routes.routers import public
from forkyard.identity.sms import queue_sms
from forkyard.kit.clock import utcnow
from forkyard.mail.sender import queue_email

MAX_CODES_PER_CHALLENGE = 5


@public.get(
    "/state", response_model=s.ChallengeState, dependencies=[anonymous_limit("mfa-state", 60)]
)
async def challenge_state(
    request: Request,
    session: DbSession,
    challenge_token: Annotated[str, Query(min_length=10, max_length=200)],
) -> s.ChallengeState:
    """The factors and expiry of a pending sign-in challenge."""
    settings = settings_of(request)
    challenge, user = await load_challenge(session, settings, challenge_token)
    factors = await confirmed_factors(session, user.id)
    return s.ChallengeState(
        factors=[s.ChallengeFactor(id=f.id, kind=f.kind, hint=hint(f, user)) for f in factors],
        kinds=await factor_kinds(session, user.id),
        expires_at=challenge.expires_at,
        attempts_left=settings.mfa_challenge_max_attempts - challenge.attempts,
    )


@public.post(
    "/send-code", response_model=s.CodeSent, dependencies=[anonymous_limit("mfa-send", 10)]
)
async def send_login_code(body: s.SendCode, request: Request, session: DbSession) -> s.CodeSent:
    """Text or email a sign-in code for a pending challenge."""
    settings = settings_of(request)
    challenge, user = await load_challenge(session, settings, body.challenge_token)
    factor = next(
        (
            f
            for f in await confirmed_factors(session, user.id)
            if f.kind == body.factor and body.factor_id in (None, f.id)
        ),
        None,
    )
    if factor is None:
        raise FactorUnavailable()
    if challenge.codes_sent >= MAX_CODES_PER_CHALLENGE:
        raise TooManyCodes()
    challenge.codes_sent += 1
    target = factor.phone if factor.kind == "sms" else user.email
    assert target is not None
    code = await issue_code(
        session,
        settings,
        user_id=user.id,
        purpose="login",
        target=target,
        factor_id=factor.id,
        challenge_id=challenge.id,
    )
    if factor.kind == "sms":
        await queue_sms(session, target, f"Your Forkyard sign-in code is {code}")
    else:
        await queue_email(
            session,
            target,
            "Your Forkyard sign-in code",
            f"Your sign-in code is {code}. It expires in {settings.mfa_code_ttl_s // 60} "
            "minutes. If you did not try to sign in, change your password.\n",
        )
    return s.CodeSent(
        sent_to=hint(factor, user), expires_at=utcnow() + timedelta(seconds=settings.mfa_code_ttl_s)
    )


@public.post("", response_model=None, dependencies=[anonymous_limit("mfa-verify", 30)])
async def verify_login(body: s.MfaVerify, request: Request, session: DbSession) -> JSONResponse:
    """Finish a sign-in with a TOTP, SMS or email code, or a backup code; sets the cookies."""
    settings = settings_of(request)
    challenge, user = await load_challenge(session, settings, body.challenge_token)
    code = body.code.strip().replace(" ", "")
    ok = False
    used = "backup_code"
    factors = await confirmed_factors(session, user.id)
    if code.isdigit():
        for factor in factors:
            if factor.kind == "totp" and await totp.accept_code(session, settings, factor, code):
                ok, used = True, "totp"
                break
        if not ok and any(f.kind in ("sms", "email") for f in factors):
            row = await check_code(
                session,
                settings,
                user_id=user.id,
                purpose="login",
                code=code,
                challenge_id=challenge.id,
                raise_on_failure=False,
            )
            if row is not None:
                ok, used = True, "code"
                factor_used = next((f for f in factors if f.id == row.factor_id), None)
                if factor_used is not None:
                    factor_used.last_used_at = utcnow()
                    used = factor_used.kind
    elif factors:
        ok = await backup_codes.consume(session, settings, user.id, code)
    if not ok:
        await fail_attempt(session, challenge, user, request, "wrong_code")
        raise InvalidCode(
            details={"attempts_left": settings.mfa_challenge_max_attempts - challenge.attempts},
            keep_changes=True,
        )
    challenge.used_at = utcnow()
    return await sign_in(
        session, request, user, method=f"{challenge.method}+{used}", mfa_verified=True
    )


@public.post(
    "/webauthn/begin",
    response_model=s.WebauthnLoginBegin,
    dependencies=[anonymous_limit("mfa-webauthn", 30)],
)
async def webauthn_login_begin(
    body: s.ChallengeIn, request: Request, session: DbSession
) -> s.WebauthnLoginBegin:
    """Options for navigator.credentials.get() for a pending sign-in challenge."""
    settings = settings_of(request)
    challenge, user = await load_challenge(session, settings, body.challenge_token)
    passkeys = [f for f in await confirmed_factors(session, user.id) if f.kind == "webauthn"]
    if not passkeys:
        raise FactorUnavailable()
    options, ceremony = webauthn.authentication_options(settings, passkeys)
    challenge.webauthn_challenge = ceremony
    return s.WebauthnLoginBegin(options=options)


@public.post(
    "/webauthn/finish", response_model=None, dependencies=[anonymous_limit("mfa-webauthn", 30)]
)
async def webauthn_login_finish(
    body: s.WebauthnLoginFinish, request: Request, session: DbSession
) -> JSONResponse:
    """Finish a sign-in with a passkey; sets the cookies like the code-based factors."""
    settings = settings_of(request)
    challenge, user = await load_challenge(session, settings, body.challenge_token)
    ceremony = challenge.webauthn_challenge
    challenge.webauthn_challenge = None  # each ceremony challenge is used once
    credential_id = str(body.credential.get("id") or body.credential.get("rawId") or "")
    factor = next(
        (
            f
            for f in await confirmed_factors(session, user.id)
            if f.kind == "webauthn" and f.credential_id == credential_id
        ),
        None,
    )
    try:
        if ceremony is None or factor is None:
            raise FactorUnavailable("Begin the passkey ceremony for this challenge first.")
        factor.sign_count = webauthn.verify_authentication(
            settings, body.credential, ceremony, factor
        )
    except (FactorUnavailable, WebauthnFailed) as exc:
        await fail_attempt(session, challenge, user, request, exc.code)
        exc.keep_changes = True
        raise
    factor.last_used_at = utcnow()
    challenge.used_at = utcnow()
    return await sign_in(
        session, request, user, method=f"{challenge.method}+webauthn", mfa_verified=True
    )
