"""Who may sign in to an instance over SSH, and the bookkeeping of their sessions: reads and
writes of the gateway, and only those."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, select, update

from forkyard.audit.service import record
from forkyard.compute.models import ComputeServer, Instance
from forkyard.db.changes import ListenedCache, changes
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


@dataclass(frozen=True)
class NodeRoute:
    """The compute server a running instance runs on (what node_clients needs of its row)."""

    id: str
    url: str
    secret_encrypted: str


@dataclass(frozen=True)
class SignIn:
    """What a connection to one instance needs: fingerprint -> grant for every key of every
    member of the instance's org with write access, and where it runs (None: not running)."""

    keys: dict[str, Grant]
    server: NodeRoute | None


NOBODY = SignIn({}, None)

# By instance id (db/changes.py). Triggers announce every change to keys, memberships, users,
# servers and the instances' status, server or org on `forkyard_ssh_access`
# (db/migrations/repeatable/ssh_access_changes.sql), so a removed key or member is refused on
# the next connection. In this process, a change to the first three drops every entry at its
# flush; instances are left to the trigger, because activity stamps change them all the time.
sign_ins = changes.register(
    ListenedCache[SignIn](
        "forkyard_ssh_access", ttl_s=30.0, tables=("ssh_keys", "memberships", "users")
    )
)


async def sign_in(db: Database, instance_id: str) -> SignIn:
    """Who may sign in to the instance and where it runs, in one statement (or from the
    cache). NOBODY for an id that is no instance: the caller cannot tell, and an unknown id is
    cached like a known one so a refusal takes the same time whichever it was."""
    if not has_prefix(instance_id, "inst"):
        return NOBODY
    cached = sign_ins.get(instance_id)
    if cached is not None:
        return cached
    generation = sign_ins.generation
    async with db.transaction() as session:
        rows = (
            await session.execute(
                select(
                    Instance.org_id,
                    Instance.status,
                    ComputeServer.id,
                    ComputeServer.url,
                    ComputeServer.secret_encrypted,
                    SshKey.fingerprint,
                    SshKey.user_id,
                    SshKey.id,
                )
                .select_from(Instance)
                .outerjoin(ComputeServer, ComputeServer.id == Instance.server_id)
                # Not a tenancy check: the instance's own org decides whose keys open it.
                .outerjoin(
                    Membership,
                    and_(Membership.org_id == Instance.org_id, Membership.role.in_(WRITE_ROLES)),
                )
                .outerjoin(User, and_(User.id == Membership.user_id, User.deleted_at.is_(None)))
                .outerjoin(SshKey, SshKey.user_id == User.id)
                .where(Instance.id == instance_id)
            )
        ).all()
    found = NOBODY
    if rows:
        org_id, status, server_id, url, secret = rows[0][:5]
        server = None
        if status == "running" and server_id is not None:
            server = NodeRoute(server_id, url, secret)
        keys = {
            fp: Grant(user_id, key_id, org_id) for *_, fp, user_id, key_id in rows if fp is not None
        }
        found = SignIn(keys, server)
    sign_ins.put(instance_id, found, generation)
    return found


async def instance_status(db: Database, instance_ids: list[str]) -> dict[str, str]:
    async with db.transaction() as session:
        rows = await session.execute(
            select(Instance.id, Instance.status).where(Instance.id.in_(instance_ids))
        )
        return {i: s for i, s in rows}


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
            # On the connection, not through the ORM: the stamp changes nothing sign-in reads,
            # and an ORM update of ssh_keys would empty `sign_ins` at every session (above).
            connection = await session.connection()
            await connection.execute(
                update(SshKey).where(SshKey.id == grant.key_id).values(last_used_at=utcnow())
            )
