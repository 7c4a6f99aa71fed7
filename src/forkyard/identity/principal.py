"""The one principal type for every caller: a user session, an API key, a node or staff."""

from __future__ import annotations

from dataclasses import dataclass, field

# What each org role may do. API keys carry a subset of their creator's scopes. `account`
# is not about the org: a key with it may act on its creator's own account (profile, SSH keys,
# minting keys); every member holds it for themselves. Credentials, factors and sessions stay
# out of reach of every key (deps.require_session).
ROLE_SCOPES: dict[str, frozenset[str]] = {
    "owner": frozenset({"read", "write", "admin", "account"}),
    "admin": frozenset({"read", "write", "admin", "account"}),
    "member": frozenset({"read", "write", "account"}),
    "viewer": frozenset({"read", "account"}),
}
ALL_SCOPES = ("read", "write", "admin", "account")


@dataclass
class Principal:
    kind: str  # "user" (cookie session), "api_key", "node"
    user_id: str | None
    org_id: str | None
    role: str | None
    scopes: frozenset[str]
    session_id: str | None = None
    api_key_id: str | None = None
    is_staff: bool = False
    # The acting user's email is verified (for an API key, its creator's): creating compute
    # needs it.
    email_verified: bool = False
    via_cookie: bool = False
    ip: str = "unknown"
    user_agent: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def actor_id(self) -> str | None:
        return self.api_key_id if self.kind == "api_key" else self.user_id

    @property
    def rate_key(self) -> str:
        return f"{self.kind}:{self.api_key_id or self.session_id or self.user_id}"

    def can(self, scope: str) -> bool:
        return scope in self.scopes
