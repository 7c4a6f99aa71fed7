"""Adding a phone (SMS) or the account's email address as a factor: a code is sent, then
checked; a wrong code spends an attempt."""

from __future__ import annotations

from datetime import timedelta

from fastapi import Request

from forkyard.db.session import DbSession
from forkyard.identity.deps import CurrentPrincipal, settings_of
from forkyard.identity.mfa import schemas as s
from forkyard.identity.mfa.codes import issue_code
from forkyard.identity.mfa.routes.common import (
    SessionUser,
    begin_enrollment,
    check_enrollment_code,
    confirm_factor,
    mask_email,
    pending_factor,
)
from forkyard.identity.mfa.routes.routers import router
from forkyard.identity.sms import is_e164, mask_phone, queue_sms
from forkyard.kit.clock import utcnow
from forkyard.kit.errors import ValidationFailed
from forkyard.kit.ratelimit import limiter
from forkyard.mail.sender import queue_email


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
    factor = await begin_enrollment(session, user, "sms", phone=body.phone)
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
    factor = await pending_factor(session, user, "sms")
    await check_enrollment_code(request, session, user, "enroll_sms", body.code, factor.phone)
    return await confirm_factor(
        session, principal, user, factor, f"Phone {mask_phone(factor.phone)}"
    )


@router.post("/email/enroll", response_model=s.EnrollmentStarted)
async def email_enroll(
    request: Request, session: DbSession, user: SessionUser
) -> s.EnrollmentStarted:
    """Start adding the account's email address as a factor: a code is emailed."""
    settings = settings_of(request)
    limiter.hit(f"mfa-send:{user.id}", 5)
    factor = await begin_enrollment(session, user, "email")
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
    factor = await pending_factor(session, user, "email")
    await check_enrollment_code(request, session, user, "enroll_email", body.code, user.email)
    return await confirm_factor(session, principal, user, factor, "Email codes")
