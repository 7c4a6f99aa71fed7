"""Registering a passkey (WebAuthn) as a factor."""

from __future__ import annotations

from fastapi import Request
from sqlalchemy import select

from forkyard.db.session import DbSession
from forkyard.identity.deps import CurrentPrincipal, settings_of
from forkyard.identity.mfa import schemas as s
from forkyard.identity.mfa import webauthn
from forkyard.identity.mfa.challenges import confirmed_factors
from forkyard.identity.mfa.errors import NoPendingEnrollment
from forkyard.identity.mfa.routes.common import (
    SessionUser,
    begin_enrollment,
    confirm_factor,
    pending_factor,
)
from forkyard.identity.mfa.routes.routers import router
from forkyard.identity.models import MfaFactor
from forkyard.kit.errors import Conflict, ForkyardError


@router.post("/webauthn/register/begin", response_model=s.WebauthnRegisterBegin)
async def webauthn_register_begin(
    request: Request, session: DbSession, user: SessionUser
) -> s.WebauthnRegisterBegin:
    """Start a passkey registration: options for navigator.credentials.create()."""
    existing = [f for f in await confirmed_factors(session, user.id) if f.kind == "webauthn"]
    options, challenge = webauthn.registration_options(settings_of(request), user, existing)
    factor = await begin_enrollment(session, user, "webauthn", pending_challenge=challenge)
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
    factor = await pending_factor(session, user, "webauthn", body.factor_id)
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
    return await confirm_factor(session, principal, user, factor, body.name)
