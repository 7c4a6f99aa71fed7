"""Whether an org has a webhook endpoint for an event type: the audience of the fan-out
subscriber (forkyard.events `audience`), so the exec hot path queues a fan-out job only for an
org that would get a delivery (docs/adr/0016-webhooks.md, exec.finished).

The answer is cached per org and process (db/changes.py): `repeatable/webhook_endpoint_changes.sql`
announces every endpoint change on `forkyard_webhook_endpoints` with its org's id, and a change
made through a session in this process drops every entry at once. Cached while the change feed
listens, at most `ttl_s`; while it does not, every question reads the table."""

from __future__ import annotations

from sqlalchemy import func, select

from forkyard.db.changes import ListenedCache, changes
from forkyard.db.engine import Database
from forkyard.webhooks.models import WebhookEndpoint

# org id -> the event types its enabled endpoints ask for ("*" included as is).
endpoint_types = changes.register(
    ListenedCache[frozenset[str]](
        "forkyard_webhook_endpoints", ttl_s=30.0, tables=("webhook_endpoints",)
    )
)

_TYPES = (
    select(func.jsonb_array_elements_text(WebhookEndpoint.event_types))
    .where(WebhookEndpoint.enabled.is_(True))
    .distinct()
)


async def has_endpoint_for(db: Database, org_id: str | None, event_type: str) -> bool:
    """An enabled endpoint of this org asks for `event_type` (or "*")."""
    if org_id is None:
        return False
    types = endpoint_types.get(org_id)
    if types is None:
        generation = endpoint_types.generation
        async with db.engine.connect() as conn:
            rows = await conn.execute(_TYPES.where(WebhookEndpoint.org_id == org_id))
            types = frozenset(rows.scalars())
        endpoint_types.put(org_id, types, generation)
    return "*" in types or event_type in types
