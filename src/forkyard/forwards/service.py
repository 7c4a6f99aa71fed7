"""The rules of port forwards: one per (instance, port), in the instance's org; preview URLs by
host name; share links signed for one forward; where a preview request goes."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Select, bindparam, literal_column, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from forkyard.compute.models import ComputeServer, Instance
from forkyard.compute.service import get_instance
from forkyard.config import Settings
from forkyard.db.changes import ListenedCache, changes
from forkyard.db.engine import Database, plain_sql
from forkyard.db.tenancy import owned
from forkyard.events import Actor, emit
from forkyard.forwards import schemas
from forkyard.forwards.errors import NotHttpForward, PortAlreadyForwarded
from forkyard.forwards.events import PortForwardCreated, PortForwardDeleted
from forkyard.forwards.models import PortForward
from forkyard.identity.principal import Principal
from forkyard.kit.errors import NotFound
from forkyard.kit.ids import has_prefix

SHARE_PURPOSE = b"forkyard-preview-share"


def preview_domain(settings: Settings) -> str:
    """The wildcard domain preview hosts live under: the setting, else `localhost:<API port>`
    (`*.localhost` resolves to loopback in curl and browsers, with no DNS)."""
    return _domain(settings.preview_domain, settings.public_url)


@functools.lru_cache(maxsize=8)
def _domain(configured: str | None, public_url: str) -> str:
    # Asked on every request to the API (is this a preview host?): worked out once per setting.
    if configured:
        return configured.lower().strip(".")
    parts = urlsplit(public_url)
    return f"localhost:{parts.port}" if parts.port else "localhost"


def preview_host(settings: Settings, instance_id: str, port: int) -> str:
    return f"{port}-{instance_id}.{preview_domain(settings)}"


def preview_url(settings: Settings, instance_id: str, port: int) -> str:
    scheme = urlsplit(settings.public_url).scheme or "http"
    return f"{scheme}://{preview_host(settings, instance_id, port)}/"


def parse_preview_host(settings: Settings, host: str) -> tuple[str, int] | None:
    """(instance id, port) of a preview host, or None for any other host."""
    host = host.lower()
    domain = preview_domain(settings)
    if ":" not in domain:
        host = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    suffix = "." + domain
    if not host.endswith(suffix):
        return None
    label = host[: -len(suffix)]
    port_text, sep, instance_id = label.partition("-")
    if not sep or "." in instance_id or not port_text.isdigit() or len(port_text) > 5:
        return None
    port = int(port_text)
    if not 1 <= port <= 65535 or not has_prefix(instance_id, "inst"):
        return None
    return instance_id, port


def forward_out(settings: Settings, fwd: PortForward) -> schemas.PortForwardOut:
    if fwd.protocol == "http":
        url = preview_url(settings, fwd.instance_id, fwd.port)
    else:
        base = "ws" + settings.public_url.rstrip("/").removeprefix("http")
        url = f"{base}/v1/instances/{fwd.instance_id}/port-forwards/{fwd.id}/connect"
    return schemas.PortForwardOut(
        id=fwd.id,
        instance_id=fwd.instance_id,
        port=fwd.port,
        protocol=fwd.protocol,  # type: ignore[arg-type]
        visibility=fwd.visibility,  # type: ignore[arg-type]
        name=fwd.name,
        url=url,
        created_at=fwd.created_at,
    )


def _event(fwd: PortForward, cls: type[PortForwardCreated | PortForwardDeleted], who: Principal):
    return cls(
        org_id=fwd.org_id,
        resource_id=fwd.id,
        actor=Actor.of(who),
        instance_id=fwd.instance_id,
        port=fwd.port,
        protocol=fwd.protocol,
        visibility=fwd.visibility,
    )


async def create_forward(
    session: AsyncSession, principal: Principal, instance_id: str, body: schemas.PortForwardCreate
) -> PortForward:
    instance = await get_instance(session, principal, instance_id)
    fwd = PortForward(
        org_id=instance.org_id,
        instance_id=instance.id,
        port=body.port,
        protocol=body.protocol,
        visibility=body.visibility,
        name=body.name,
        created_by=principal.actor_id,
    )
    try:
        async with session.begin_nested():
            session.add(fwd)
            await session.flush()
    except IntegrityError as exc:
        raise PortAlreadyForwarded(details={"port": body.port}) from exc
    await emit(session, _event(fwd, PortForwardCreated, principal))
    return fwd


def forwards_query(principal: Principal, instance_id: str) -> Select[PortForward]:
    """The instance's forwards, in the caller's org only."""
    return owned(select(PortForward), principal).where(PortForward.instance_id == instance_id)


async def get_forward(
    session: AsyncSession, principal: Principal, instance_id: str, forward_id: str
) -> PortForward:
    if not has_prefix(forward_id, "pf"):
        raise NotFound.of("Port forward", forward_id)
    fwd = (
        await session.execute(
            forwards_query(principal, instance_id).where(PortForward.id == forward_id)
        )
    ).scalar_one_or_none()
    if fwd is None:
        raise NotFound.of("Port forward", forward_id)
    return fwd


async def delete_forward(
    session: AsyncSession, principal: Principal, instance_id: str, forward_id: str
) -> None:
    fwd = await get_forward(session, principal, instance_id, forward_id)
    await session.delete(fwd)
    await emit(session, _event(fwd, PortForwardDeleted, principal))


# --- share links: a signed, expiring token for one forward ---


def _share_key(settings: Settings) -> bytes:
    return hmac.new(settings.secret_key.encode(), SHARE_PURPOSE, hashlib.sha256).digest()


def share_token(settings: Settings, forward_id: str, expires: int) -> str:
    payload = f"{forward_id}.{expires}"
    sig = hmac.new(_share_key(settings), payload.encode(), hashlib.sha256).digest()
    return payload + "." + base64.urlsafe_b64encode(sig).decode().rstrip("=")


def share_token_forward(settings: Settings, token: str) -> str | None:
    """The forward a live, untampered token opens, else None."""
    forward_id, _, rest = token.partition(".")
    expires_text, _, _sig = rest.partition(".")
    if not expires_text.isdigit() or int(expires_text) <= time.time():
        return None
    expected = share_token(settings, forward_id, int(expires_text))
    return forward_id if hmac.compare_digest(expected.encode(), token.encode()) else None


async def share_forward(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    instance_id: str,
    forward_id: str,
) -> schemas.ShareOut:
    fwd = await get_forward(session, principal, instance_id, forward_id)
    if fwd.protocol != "http":
        raise NotHttpForward()
    expires = int(time.time()) + settings.preview_share_ttl_s
    token = share_token(settings, fwd.id, expires)
    url = preview_url(settings, fwd.instance_id, fwd.port) + f"?{SHARE_PARAM}={token}"
    return schemas.ShareOut(url=url, expires_at=datetime.fromtimestamp(expires, UTC))


SHARE_PARAM = "forkyard_share"
SHARE_COOKIE = "fy_preview"


# --- where a preview request goes: one statement on a plain connection (hot path) ---


def _preview_statements() -> tuple[str, str, str]:
    forward_and_node = (
        select(
            PortForward.id,
            PortForward.org_id,
            PortForward.protocol,
            PortForward.visibility,
            Instance.status,
            ComputeServer.id,
            ComputeServer.url,
            ComputeServer.secret_encrypted,
            PortForward.port,
        )
        .join(Instance, Instance.id == PortForward.instance_id)
        .outerjoin(ComputeServer, ComputeServer.id == Instance.server_id)
        .where(PortForward.instance_id == bindparam("p_instance_id"))
    )
    by_port = forward_and_node.where(PortForward.port == bindparam("p_port"))
    by_id = forward_and_node.where(PortForward.id == bindparam("p_forward_id"))
    touch = (
        update(Instance)
        .where(
            Instance.id == bindparam("p_instance_id"),
            Instance.status == literal_column("'running'"),
        )
        .values(last_activity_at=bindparam("p_now"))
    )
    return plain_sql(by_port), plain_sql(by_id), plain_sql(touch)


PREVIEW_LOOKUP, TUNNEL_LOOKUP, PREVIEW_TOUCH = _preview_statements()


@dataclass(frozen=True)
class PreviewServer:
    id: str
    url: str
    secret_encrypted: str


@dataclass(frozen=True)
class PreviewTarget:
    forward_id: str
    org_id: str
    protocol: str
    visibility: str
    instance_status: str
    server: PreviewServer | None


# Where preview requests go, per instance: {port: target} for the ports asked for so far
# (db/changes.py). A change to any forward of the instance, to the instance's status, server or
# org, or to any server's address, is announced on `forkyard_previews`
# (db/migrations/repeatable/port_forward_changes.sql) and drops the entry; so does the same
# change flushed by a session in this process (`tables`, `keyed_by`), before its announcement
# is back. A (instance, port) with no forward is not cached: a refusal costs a lookup.
previews = changes.register(
    ListenedCache[dict[int, PreviewTarget]](
        "forkyard_previews",
        ttl_s=30.0,
        tables=("compute_servers", "port_forwards"),
        keyed_by="instances",
    )
)


async def preview_target(db: Database, instance_id: str, port: int) -> PreviewTarget | None:
    """The forward of (instance, port) with what admitting a request to it needs, from the
    cache when it can answer, else from one statement on a plain connection."""
    known = previews.get(instance_id)
    if known is not None and port in known:
        return known[port]
    generation = previews.generation
    row = await db.plain(PREVIEW_LOOKUP, {"p_instance_id": instance_id, "p_port": port})
    return None if row is None else _keep(instance_id, known, generation, row)


async def tunnel_target(
    db: Database, instance_id: str, forward_id: str
) -> tuple[int, PreviewTarget] | None:
    """A forward of the instance by its id, with its port: what a tunnel (`.../connect`)
    needs, from the same cache as the preview's (one statement when it cannot answer)."""
    known = previews.get(instance_id)
    for port, target in (known or {}).items():
        if target.forward_id == forward_id:
            return port, target
    generation = previews.generation
    params = {"p_instance_id": instance_id, "p_forward_id": forward_id}
    row = await db.plain(TUNNEL_LOOKUP, params)
    return None if row is None else (row[8], _keep(instance_id, known, generation, row))


def _keep(
    instance_id: str, known: dict[int, PreviewTarget] | None, generation: int, row: tuple[Any, ...]
) -> PreviewTarget:
    server = PreviewServer(row[5], row[6], row[7]) if row[5] else None
    target = PreviewTarget(row[0], row[1], row[2], row[3], row[4], server)
    # A new dict, never the cached one changed in place: `put` refuses it if anything was
    # forgotten since the lookup began, and the other ports' targets are as current as this one.
    previews.put(instance_id, {**(known or {}), row[8]: target}, generation)
    return target
