"""Who may sign in to an instance over SSH, and the bookkeeping of their sessions: reads and
writes of the gateway, and only those."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update

from forkyard.audit.service import record
from forkyard.compute.models import ComputeServer, Instance
from forkyard.db.engine import Database
from forkyard.identity.models import SshKey, User
from forkyard.identity.principal import ROLE_SCOPES
from forkyard.kit.clock import utcnow
from forkyard.kit.ids import has_prefix
from forkyard.tenants.models import Membership

WRITE_ROLES = tuple(role for role, scopes in ROLE_SCOPES.items() if "write" in scopes)


@dataclass(frozen=True)
class Grant:
    """An SSH key that opens one instance: its holder and the instance's org."""

    user_id: str
    key_id: str
    org_id: str


async def keys_for_instance(db: Database, instance_id: str) -> dict[str, Grant]:
    """Fingerprint -> grant for every key of every member of the instance's org with write
    access. Empty for an id that is no instance (or no longer one): the caller cannot tell."""
    if not has_prefix(instance_id, "inst"):
        return {}
    async with db.transaction() as session:
        rows = await session.execute(
            select(SshKey.fingerprint, SshKey.user_id, SshKey.id, Instance.org_id)
            .select_from(Instance)
            # Not a tenancy check: the instance's own org decides whose keys open it.
            .join(Membership, Membership.org_id == Instance.org_id)
            .join(User, User.id == Membership.user_id)
            .join(SshKey, SshKey.user_id == User.id)
            .where(
                Instance.id == instance_id,
                Membership.role.in_(WRITE_ROLES),
                User.deleted_at.is_(None),
            )
        )
        return {fp: Grant(user_id, key_id, org_id) for fp, user_id, key_id, org_id in rows}


async def instance_status(db: Database, instance_ids: list[str]) -> dict[str, str]:
    async with db.transaction() as session:
        rows = await session.execute(
            select(Instance.id, Instance.status).where(Instance.id.in_(instance_ids))
        )
        return {i: s for i, s in rows}


async def running_server(db: Database, instance_id: str) -> ComputeServer | None:
    """The server a running instance runs on (None: not running)."""
    async with db.transaction() as session:
        row = (
            await session.execute(
                select(Instance.status, ComputeServer)
                .join(ComputeServer, ComputeServer.id == Instance.server_id)
                .where(Instance.id == instance_id)
            )
        ).one_or_none()
    if row is None or row[0] != "running":
        return None
    server: ComputeServer = row[1]
    return server


async def touch(db: Database, instance_ids: list[str]) -> None:
    """An SSH session is activity: the idle timeout counts from its last stamp."""
    if not instance_ids:
        return
    async with db.transaction() as session:
        await session.execute(
            update(Instance)
            .where(Instance.id.in_(instance_ids), Instance.status == "running")
            .values(last_activity_at=utcnow())
        )


async def audit(
    db: Database,
    action: str,
    grant: Grant,
    instance_id: str,
    ip: str | None,
    data: dict[str, object] | None = None,
) -> None:
    async with db.transaction() as session:
        await record(
            session,
            action,
            org_id=grant.org_id,
            actor_id=grant.user_id,
            actor_type="user",
            target_type="instance",
            target_id=instance_id,
            ip=ip,
            user_agent="ssh",
            data=data or {},
        )
        if action == "ssh.session_started":
            await session.execute(
                update(SshKey).where(SshKey.id == grant.key_id).values(last_used_at=utcnow())
            )
