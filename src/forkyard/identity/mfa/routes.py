"""MFA HTTP routes: managing factors (signed in) and passing a sign-in challenge (public)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import delete, select

from forkyard.audit.service import record
from forkyard.db.session import DbSession
from forkyard.identity.deps import CurrentPrincipal, SudoPrincipal, require_session, settings_of
from forkyard.identity.errors import CookieSessionRequired
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
    NoPendingEnrollment,
    TooManyCodes,
    WebauthnFailed,
)
from forkyard.identity.models import BackupCode, MfaFactor, User
from forkyard.identity.principal import Principal
from forkyard.identity.routes import anonymous_limit
from forkyard.identity.sms import is_e164, mask_phone, queue_sms
from forkyard.kit.clock import utcnow
from forkyard.kit.errors import Conflict, ForkyardError, NotFound, ValidationFailed
from forkyard.kit.ids import has_prefix
from forkyard.kit.ratelimit import limiter
from forkyard.kit.routing import protected_router, public_router
from forkyard.mail.sender import queue_email

router = protected_router("auth", prefix="/v1/auth/mfa", requires=require_session)
public = public_router("auth", prefix="/v1/auth/login/mfa")

PUBLIC = [
    "/v1/auth/login/mfa",
    "/v1/auth/login/mfa/state",
    "/v1/auth/login/mfa/send-code",
    "/v1/auth/login/mfa/webauthn/begin",
    "/v1/auth/login/mfa/webauthn/finish",
]
MAX_CODES_PER_CHALLENGE = 5


class MfaNotEnabled(Conflict):
    code = "mfa_not_enabled"
    message = "Set up a second factor first."


def mask_email(email: str) -> str:
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


def _hint(factor: MfaFactor, user: User) -> str | None:
    if factor.kind == "sms":
        return mask_phone(factor.phone)
    if factor.kind == "email":
        return mask_email(user.email)
    return None


async def _session_user(session: DbSession, principal: CurrentPrincipal) -> User:
    """Factors are managed from a signed-in browser, never with an API key."""
    if principal.session_id is None or principal.user_id is None:
        raise CookieSessionRequired()
    user = await session.get(User, principal.user_id)
    if user is None or user.deleted_at is not None:
        raise NotFound()
    return user


SessionUser = Annotated[User, Depends(_session_user)]


async def _pending(
    session: DbSession, user: User, kind: str, factor_id: str | None = None
) -> MfaFactor:
    query = select(MfaFactor).where(
        MfaFactor.user_id == user.id, MfaFactor.kind == kind, MfaFactor.confirmed_at.is_(None)
    )
    if factor_id is not None:
        query = query.where(MfaFactor.id == factor_id)
    factor = (
        (await session.execute(query.order_by(MfaFactor.created_at.desc()).limit(1)))
        .scalars()
        .first()
    )
    if factor is None:
        raise NoPendingEnrollment()
    return factor


async def _begin(session: DbSession, user: User, kind: str, **fields: object) -> MfaFactor:
    """A new pending factor; older unfinished enrollments of the same kind are dropped."""
    await session.execute(
        delete(MfaFactor).where(
            MfaFactor.user_id == user.id, MfaFactor.kind == kind, MfaFactor.confirmed_at.is_(None)
        )
    )
    factor = MfaFactor(user_id=user.id, kind=kind, sign_count=0, **fields)
    session.add(factor)
    await session.flush()
    return factor


async def _confirmed(
    session: DbSession, principal: Principal, user: User, factor: MfaFactor, name: str
) -> s.Factor:
    factor.confirmed_at = utcnow()
    factor.name = name
    factor.pending_challenge = None
    await session.flush()
    await record(
        session,
        "auth.mfa_factor_added",
        principal=principal,
        target_type="mfa_factor",
        target_id=factor.id,
        data={"kind": factor.kind},
    )
    await queue_email(
        session,
        user.email,
        "A sign-in factor was added to your Forkyard account",
        f"A {factor.kind} factor ({name}) was added to your account. If this was not you, "
        "secure your account now.\n",
    )
    return _factor_out(factor, user)


def _factor_out(factor: MfaFactor, user: User) -> s.Factor:
    return s.Factor(
        id=factor.id,
        kind=factor.kind,  # type: ignore[arg-type]
        name=factor.name,
        hint=_hint(factor, user),
        created_at=factor.created_at,
        last_used_at=factor.last_used_at,
    )


# --- managing factors (signed in) ---


@router.get("/factors", response_model=s.FactorList)
async def list_factors(session: DbSession, user: SessionUser) -> s.FactorList:
    """The account's confirmed second factors and how many backup codes are left."""
    factors = await confirmed_factors(session, user.id)
    return s.FactorList(
        data=[_factor_out(f, user) for f in factors],
        backup_codes_remaining=await backup_codes.remaining(session, user.id),
    )


@router.post("/factors/{id}/remove", status_code=204)
async def remove_factor(
    id: str, session: DbSession, principal: SudoPrincipal, user: SessionUser
) -> Response:
    """Remove a second factor (sudo). Removing the last one also drops the backup codes."""
    factor = await session.get(MfaFactor, id) if has_prefix(id, "mfa") else None
    if factor is None or factor.user_id != user.id:
        raise NotFound.of("Factor", id)
    await session.delete(factor)
    await session.flush()
    if not await confirmed_factors(session, user.id):
        await session.execute(delete(BackupCode).where(BackupCode.user_id == user.id))
    await record(
        session,
        "auth.mfa_factor_removed",
        principal=principal,
        target_type="mfa_factor",
        target_id=id,
        data={"kind": factor.kind},
    )
    await queue_email(
        session,
        user.email,
        "A sign-in factor was removed from your Forkyard account",
        f"The {factor.kind} factor {factor.name!r} was removed. If this was not you, secure "
        "your account now.\n",
    )
    return Response(status_code=204)


@router.post("/totp/enroll/begin", response_model=s.TotpEnrollment)
async def totp_enroll_begin(
    request: Request, session: DbSession, user: SessionUser
) -> s.TotpEnrollment:
    """Start adding an authenticator app: the secret, its otpauth URI and a QR code (SVG)."""
    settings = settings_of(request)
    secret = totp.new_secret()
    factor = await _begin(session, user, "totp", secret_enc=totp.seal(settings, secret))
    uri = totp.provisioning_uri(settings, secret, user.email)
    return s.TotpEnrollment(
        factor_id=factor.id, secret=secret, otpauth_uri=uri, qr_svg=totp.qr_svg(uri)
    )


@router.post("/totp/enroll/finish", response_model=s.Factor, status_code=201)
async def totp_enroll_finish(
    body: s.TotpFinish,
    request: Request,
    session: DbSession,
    principal: CurrentPrincipal,
    user: SessionUser,
) -> s.Factor:
    """Confirm the authenticator app with a current code."""
    factor = await _pending(session, user, "totp", body.factor_id)
    limiter.hit(f"mfa-enroll:{user.id}", 20)
    if not await totp.accept_code(session, settings_of(request), factor, body.code):
        raise InvalidCode()
    return await _confirmed(session, principal, user, factor, body.name)


@router.post("/sms/enroll", response_model=s.EnrollmentStarted)
async def sms_enroll(
    body: s.SmsEnroll, request: Request, session: DbSession, user: SessionUser
) -> s.EnrollmentStarted:
    """Start adding a phone as a factor: a code is texted to it."""
    settings = settings_of(request)
    if not is_e164(body.phone):
        raise ValidationFailed(
            details={"fields": [{"loc": ["body", "phone"], "msg": "use E.164, like +14155550100"}]}
        )
    limiter.hit(f"mfa-send:{user.id}", 5)
    factor = await _begin(session, user, "sms", phone=body.phone)
    code = await issue_code(
        session,
        settings,
        user_id=user.id,
        purpose="enroll_sms",
        target=body.phone,
        factor_id=factor.id,
    )
    await queue_sms(session, body.phone, f"Your Forkyard verification code is {code}")
    return s.EnrollmentStarted(
        factor_id=factor.id,
        sent_to=mask_phone(body.phone) or "",
        expires_at=utcnow() + timedelta(seconds=settings.mfa_code_ttl_s),
    )


@router.post("/sms/verify", response_model=s.Factor, status_code=201)
async def sms_verify(
    body: s.CodeIn,
    request: Request,
    session: DbSession,
    principal: CurrentPrincipal,
    user: SessionUser,
) -> s.Factor:
    """Confirm the phone factor with the texted code."""
    factor = await _pending(session, user, "sms")
    await _check_enrollment_code(request, session, user, "enroll_sms", body.code, factor.phone)
    return await _confirmed(session, principal, user, factor, f"Phone {mask_phone(factor.phone)}")


async def _check_enrollment_code(
    request: Request, session: DbSession, user: User, purpose: str, code: str, target: str | None
) -> None:
    try:
        await check_code(
            session,
            settings_of(request),
            user_id=user.id,
            purpose=purpose,
            code=code,
            target=target,
        )
    except InvalidCode as exc:
        exc.keep_changes = True  # the spent attempt counts
        raise


@router.post("/email/enroll", response_model=s.EnrollmentStarted)
async def email_enroll(
    request: Request, session: DbSession, user: SessionUser
) -> s.EnrollmentStarted:
    """Start adding the account's email address as a factor: a code is emailed."""
    settings = settings_of(request)
    limiter.hit(f"mfa-send:{user.id}", 5)
    factor = await _begin(session, user, "email")
    code = await issue_code(
        session,
        settings,
        user_id=user.id,
        purpose="enroll_email",
        target=user.email,
        factor_id=factor.id,
    )
    await queue_email(
        session,
        user.email,
        "Your Forkyard verification code",
        f"Your code is {code}. It expires in {settings.mfa_code_ttl_s // 60} minutes.\n",
    )
    return s.EnrollmentStarted(
        factor_id=factor.id,
        sent_to=mask_email(user.email),
        expires_at=utcnow() + timedelta(seconds=settings.mfa_code_ttl_s),
    )


@router.post("/email/verify", response_model=s.Factor, status_code=201)
async def email_verify(
    body: s.CodeIn,
    request: Request,
    session: DbSession,
    principal: CurrentPrincipal,
    user: SessionUser,
) -> s.Factor:
    """Confirm the email factor with the emailed code."""
    factor = await _pending(session, user, "email")
    await _check_enrollment_code(request, session, user, "enroll_email", body.code, user.email)
    return await _confirmed(session, principal, user, factor, "Email codes")


@router.post("/webauthn/register/begin", response_model=s.WebauthnRegisterBegin)
async def webauthn_register_begin(
    request: Request, session: DbSession, user: SessionUser
) -> s.WebauthnRegisterBegin:
    """Start a passkey registration: options for navigator.credentials.create()."""
    existing = [f for f in await confirmed_factors(session, user.id) if f.kind == "webauthn"]
    options, challenge = webauthn.registration_options(settings_of(request), user, existing)
    factor = await _begin(session, user, "webauthn", pending_challenge=challenge)
    return s.WebauthnRegisterBegin(factor_id=factor.id, options=options)


@router.post("/webauthn/register/finish", response_model=s.Factor, status_code=201)
async def webauthn_register_finish(
    body: s.WebauthnRegisterFinish,
    request: Request,
    session: DbSession,
    principal: CurrentPrincipal,
    user: SessionUser,
) -> s.Factor:
    """Finish the passkey registration; the passkey becomes a confirmed factor."""
    factor = await _pending(session, user, "webauthn", body.factor_id)
    challenge = factor.pending_challenge
    factor.pending_challenge = None  # one ceremony per challenge, success or not
    if not challenge:
        raise NoPendingEnrollment()
    try:
        credential_id, public_key, count = webauthn.verify_registration(
            settings_of(request), body.credential, challenge
        )
    except ForkyardError as exc:
        exc.keep_changes = True  # the spent challenge stays spent
        raise
    taken = (
        await session.execute(select(MfaFactor.id).where(MfaFactor.credential_id == credential_id))
    ).first()
    if taken is not None:
        raise Conflict("This passkey is already registered.")
    factor.credential_id, factor.public_key, factor.sign_count = credential_id, public_key, count
    return await _confirmed(session, principal, user, factor, body.name)


@router.post("/backup-codes/regenerate", response_model=s.BackupCodes)
async def regenerate_backup_codes(
    request: Request, session: DbSession, principal: SudoPrincipal, user: SessionUser
) -> s.BackupCodes:
    """Replace the backup codes (sudo); the new ones are shown only in this answer."""
    if not await confirmed_factors(session, user.id):
        raise MfaNotEnabled()
    codes = await backup_codes.regenerate(session, settings_of(request), user.id)
    await record(
        session,
        "auth.backup_codes_regenerated",
        principal=principal,
        target_type="user",
        target_id=user.id,
    )
    return s.BackupCodes(codes=codes)


# --- passing a sign-in challenge (public: the challenge token is the credential) ---


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
        factors=[s.ChallengeFactor(id=f.id, kind=f.kind, hint=_hint(f, user)) for f in factors],
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
        sent_to=_hint(factor, user),
        expires_at=utcnow() + timedelta(seconds=settings.mfa_code_ttl_s),
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
