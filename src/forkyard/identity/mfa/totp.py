"""TOTP (RFC 6238: 30-second steps, 6 digits, SHA-1, one step of skew either way). A code is
accepted once: the factor remembers the last step it accepted and refuses that step or older."""

from __future__ import annotations

import hmac
import io

import pyotp
import segno
from sqlalchemy import or_, update
from sqlalchemy.ext.asyncio import AsyncSession

from forkyard.config import Settings
from forkyard.identity.models import MfaFactor
from forkyard.kit.clock import utcnow
from forkyard.kit.crypto import decrypt, encrypt

PURPOSE = "mfa-totp-secret"
STEP_S = 30
SKEW_STEPS = 1


def new_secret() -> str:
    return pyotp.random_base32(length=32)


def seal(settings: Settings, secret: str) -> str:
    return encrypt(settings.secret_key, PURPOSE, secret)


def unseal(settings: Settings, factor: MfaFactor) -> str:
    assert factor.secret_enc is not None
    return decrypt(settings.secret_key, PURPOSE, factor.secret_enc)


def provisioning_uri(settings: Settings, secret: str, account: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=settings.webauthn_rp_name)


def qr_svg(uri: str) -> str:
    out = io.BytesIO()
    segno.make(uri, error="m").save(out, kind="svg", scale=4, xmldecl=False)
    return out.getvalue().decode()


def matching_step(secret: str, code: str) -> int | None:
    """The time step `code` belongs to, within the allowed skew, or None."""
    code = code.strip().replace(" ", "")
    if len(code) != 6 or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    now_step = int(utcnow().timestamp()) // STEP_S
    for step in range(now_step - SKEW_STEPS, now_step + SKEW_STEPS + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


async def accept_code(
    session: AsyncSession, settings: Settings, factor: MfaFactor, code: str
) -> bool:
    """Check `code` against the factor and, atomically, record its step so it works only once."""
    step = matching_step(unseal(settings, factor), code)
    if step is None:
        return False
    result = await session.execute(
        update(MfaFactor)
        .where(
            MfaFactor.id == factor.id,
            or_(MfaFactor.totp_last_step.is_(None), MfaFactor.totp_last_step < step),
        )
        .values(totp_last_step=step, last_used_at=utcnow())
        .execution_options(synchronize_session="fetch")
    )
    return bool(getattr(result, "rowcount", 0))
