"""Passkeys (WebAuthn) through py_webauthn: the relying party id, name and origin come from
settings. Challenges are stored server-side and used once; sign counters must move forward."""

from __future__ import annotations

import json
from typing import Any

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from forkyard.config import Settings
from forkyard.identity.mfa.errors import WebauthnFailed
from forkyard.identity.models import MfaFactor, User


def _descriptors(factors: list[MfaFactor]) -> list[PublicKeyCredentialDescriptor]:
    return [
        PublicKeyCredentialDescriptor(id=base64url_to_bytes(f.credential_id))
        for f in factors
        if f.credential_id
    ]


def registration_options(
    settings: Settings, user: User, existing: list[MfaFactor]
) -> tuple[dict[str, Any], str]:
    """Options for navigator.credentials.create() and the challenge (base64url) to keep."""
    options = generate_registration_options(
        rp_id=settings.webauthn_rp_id,
        rp_name=settings.webauthn_rp_name,
        user_id=user.id.encode(),
        user_name=user.email,
        user_display_name=user.name or user.email,
        exclude_credentials=_descriptors(existing),
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
    )
    return json.loads(options_to_json(options)), bytes_to_base64url(options.challenge)


def verify_registration(
    settings: Settings, credential: dict[str, Any], challenge: str
) -> tuple[str, str, int]:
    """(credential id, public key, sign count), all checked against the stored challenge."""
    try:
        verified = verify_registration_response(
            credential=credential,
            expected_challenge=base64url_to_bytes(challenge),
            expected_rp_id=settings.webauthn_rp_id,
            expected_origin=settings.webauthn_origin,
        )
    except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
        raise WebauthnFailed(details={"reason": str(exc)[:200]}) from None
    return (
        bytes_to_base64url(verified.credential_id),
        bytes_to_base64url(verified.credential_public_key),
        verified.sign_count,
    )


def authentication_options(
    settings: Settings, factors: list[MfaFactor]
) -> tuple[dict[str, Any], str]:
    options = generate_authentication_options(
        rp_id=settings.webauthn_rp_id,
        allow_credentials=_descriptors(factors),
        user_verification=UserVerificationRequirement.PREFERRED,
    )
    return json.loads(options_to_json(options)), bytes_to_base64url(options.challenge)


def verify_authentication(
    settings: Settings, credential: dict[str, Any], challenge: str, factor: MfaFactor
) -> int:
    """The authenticator's new sign count; refuses a wrong origin, challenge or a counter that
    did not move forward (a cloned authenticator)."""
    assert factor.public_key is not None
    try:
        verified = verify_authentication_response(
            credential=credential,
            expected_challenge=base64url_to_bytes(challenge),
            expected_rp_id=settings.webauthn_rp_id,
            expected_origin=settings.webauthn_origin,
            credential_public_key=base64url_to_bytes(factor.public_key),
            credential_current_sign_count=factor.sign_count,
        )
    except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
        raise WebauthnFailed(details={"reason": str(exc)[:200]}) from None
    return int(verified.new_sign_count)
