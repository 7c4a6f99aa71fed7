"""The routers of MFA, magic links, OAuth, recovery, account changes, export and SSH keys, and
their public paths (the deny-by-default test checks the list)."""

from __future__ import annotations

from fastapi import APIRouter

from forkyard.identity import account_changes, export, magic_link, oauth, recovery, ssh_keys
from forkyard.identity.mfa import routes as mfa

PUBLIC = [*mfa.PUBLIC, *magic_link.PUBLIC, *oauth.PUBLIC, *recovery.PUBLIC]

# Public routers come first; fixed paths before the `/{provider}` catch-alls.
routers: list[APIRouter] = [
    mfa.public,
    magic_link.public,
    recovery.public,
    oauth.public,
    mfa.router,
    account_changes.router,
    export.router,
    ssh_keys.router,
]
