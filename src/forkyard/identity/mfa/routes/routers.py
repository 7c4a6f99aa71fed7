"""The MFA routers and their public paths (the deny-by-default test checks the list)."""

from __future__ import annotations

from forkyard.identity.deps import require_session
from forkyard.identity.routing import protected_router, public_router

# Managing factors needs a signed-in browser session.
router = protected_router("auth", prefix="/v1/auth/mfa", requires=require_session)
# Passing a sign-in challenge: public, the challenge token is the credential.
public = public_router("auth", prefix="/v1/auth/login/mfa")

PUBLIC = [
    "/v1/auth/login/mfa",
    "/v1/auth/login/mfa/state",
    "/v1/auth/login/mfa/send-code",
    "/v1/auth/login/mfa/webauthn/begin",
    "/v1/auth/login/mfa/webauthn/finish",
]
