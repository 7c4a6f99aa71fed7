"""Adding an authenticator app (TOTP): the secret and QR code, then a first code."""

from __future__ import annotations

from fastapi import Request

from forkyard.db.session import DbSession
from forkyard.identity.deps import CurrentPrincipal, settings_of
from forkyard.identity.mfa import schemas as s
from forkyard.identity.mfa import totp
from forkyard.identity.mfa.errors import InvalidCode
from forkyard.identity.mfa.routes.common import (
    SessionUser,
    begin_enrollment,
    confirm_factor,
    pending_factor,
)
from forkyard.identity.mfa.routes.routers import router
from forkyard.kit.ratelimit import limiter


@router.post("/totp/enroll/begin", response_model=s.TotpEnrollment)
async def totp_enroll_begin(
    request: Request, session: DbSession, user: SessionUser
) -> s.TotpEnrollment:
    """Start adding an authenticator app: the secret, its otpauth URI and a QR code (SVG)."""
    settings = settings_of(request)
    secret = totp.new_secret()
    factor = await begin_enrollment(session, user, "totp", secret_enc=totp.seal(settings, secret))
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
    factor = await pending_factor(session, user, "totp", body.factor_id)
    limiter.hit(f"mfa-enroll:{user.id}", 20)
    if not await totp.accept_code(session, settings_of(request), factor, body.code):
        raise InvalidCode()
    return await confirm_factor(session, principal, user, factor, body.name)
