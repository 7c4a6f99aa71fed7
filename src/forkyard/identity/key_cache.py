"""API keys as this process last looked them up (db/changes.py says when an entry may be used).

Every programmatic request authenticates with an API key (identity/deps.py), and what a key
grants changes rarely: when the key is revoked, rotated, deleted or changes scopes, when its
creator is deleted or changes staff status, or when its org's IP allowlist changes. Triggers on
those tables announce each change on `forkyard_auth` (db/migrations/repeatable/auth_changes.sql),
which empties the cache in every process. Expiry needs no announcement: `expires_at` is checked
on every request, cached or not.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from forkyard.db.changes import ListenedCache, changes


@dataclass
class KeyGrant:
    """An API key as its lookup found it (the columns of identity/deps.py's lookup, in order)."""

    key_id: str
    org_id: str
    created_by: str | None
    scopes: list[str]
    revoked_at: datetime | None
    expires_at: datetime | None
    last_used_at: datetime | None
    creator_deleted_at: datetime | None
    creator_is_staff: bool
    creator_verified: bool
    allowlist: list[str]


# By key hash.
key_cache = changes.register(
    ListenedCache[KeyGrant](
        "forkyard_auth", ttl_s=30.0, tables=("api_keys", "users", "ip_allowlist_entries")
    )
)
