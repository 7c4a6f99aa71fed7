"""MFA HTTP routes: managing factors (signed in: `factors`, `authenticator`, `sent_codes`,
`passkeys`) and passing a sign-in challenge (public: `login`). Importing a module registers
its routes on `router` or `public`."""

from forkyard.identity.mfa.routes import authenticator, factors, login, passkeys, sent_codes
from forkyard.identity.mfa.routes.routers import PUBLIC, public, router

__all__ = [
    "PUBLIC",
    "authenticator",
    "factors",
    "login",
    "passkeys",
    "public",
    "router",
    "sent_codes",
]
