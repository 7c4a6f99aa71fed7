"""The exec hot path, and the one module of exec and files that knows SQL (ADR 0007, 0008):
claiming a running instance for one call in one statement on a plain connection, the per-process
cache of where running instances run (`routes`), and closing an exec's record beside its answer.
Everything else in this package talks to the node through the `Target` a claim returns."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shlex
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from sqlalchemy import (
    Table,
    Text,
    bindparam,
    cast,
    exists,
    func,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert

from forkyard.compute.errors import InstanceNotRunning, NodeUnreachable
from forkyard.compute.events import ExecFinished
from forkyard.compute.models import ComputeServer, ExecRecord, Instance
from forkyard.compute.node_client import NodeClient, RemoteError, node_clients
from forkyard.db.changes import ListenedCache, changes
from forkyard.db.engine import Database, plain_sql
from forkyard.db.session import database
from forkyard.events import SUBSCRIBERS, Actor, audience
from forkyard.events.kernel import DELIVER_ATTEMPTS, DELIVER_JOB
from forkyard.events.models import EventRecord
from forkyard.identity.deps import settings_of
from forkyard.identity.principal import Principal
from forkyard.jobs.models import Job
from forkyard.kit.clock import utcnow
from forkyard.kit.errors import NotFound
from forkyard.kit.ids import has_prefix, new_id

log = logging.getLogger("forkyard.compute.exec")


@dataclass
class Target:
    """A running instance and its node, claimed for one exec or file operation."""

    instance_id: str
    node: NodeClient
    db: Database
    org_id: str
    actor: Actor
    exec_id: str | None = None
    streamed: bool = False
    # The claim's writes, when the route came from the cache and they run beside the call.
    claimed: asyncio.Task[None] | None = None

    async def call(self, op: str, params: dict[str, Any], *, timeout: float = 60.0) -> Any:
        try:
            return await self.node.call(op, self.instance_id, params, timeout=timeout)
        except (RemoteError, NodeUnreachable):
            routes.forget(self.instance_id)  # perhaps it moved or stopped: ask the database
            raise

    async def settle(self) -> None:
        """Wait for the claim's writes if they ran beside the call (a failure there costs
        only bookkeeping, never the user's answer)."""
        if self.claimed is not None:
            with contextlib.suppress(Exception):
                await self.claimed

    async def finish(
        self,
        status: str,
        *,
        exit_code: int | None = None,
        duration_ms: float | None = None,
        signal: int | None = None,
        stdout_bytes: int | None = None,
        stderr_bytes: int | None = None,
        truncated: bool = False,
    ) -> None:
        """Close the exec's record, stamp the instance's activity and record `exec.finished`
        (with its subscribers' jobs, when anyone listens), in one statement once the node has
        answered. A failure here costs only the record, never the user's answer."""
        await self.settle()
        assert self.exec_id is not None
        event = ExecFinished(
            org_id=self.org_id,
            resource_id=self.exec_id,
            actor=self.actor,
            instance_id=self.instance_id,
            status=status,
            exit_code=exit_code,
            duration_ms=duration_ms,
            signal=signal,
            streamed=self.streamed,
            stdout_bytes=stdout_bytes,
            stderr_bytes=stderr_bytes,
            truncated=truncated,
        )
        now = utcnow()
        params = {
            "p_id": self.exec_id,
            "p_instance_id": self.instance_id,
            "p_status": status,
            "p_exit_code": exit_code,
            "p_duration_ms": duration_ms,
            "p_now": now,
            "p_event_id": new_id("evt"),
            **{f"p_{k}": v for k, v in event.row_values().items() if k != "payload"},
            "p_payload": json.dumps(event.payload()),
        }
        try:
            try:
                listeners = await audience(self.db, event)
            except Exception:
                # Unsure who listens: queue every subscriber (a job too many does nothing).
                log.exception("asking who listens for %s failed", event.type)
                listeners = [sub.name for sub in SUBSCRIBERS.get(event.type, ())]
            if listeners:
                params["p_job_ids"] = [new_id("job") for _ in listeners]
                params["p_subscribers"] = listeners
                await self.db.plain(EXEC_ENDED_HEARD, params)
            else:
                await self.db.plain(EXEC_ENDED, params)
        except Exception:
            log.exception("closing exec record %s failed", self.exec_id)


@dataclass(frozen=True)
class _Server:
    id: str
    url: str
    secret_encrypted: str


@dataclass(frozen=True)
class _Route:
    """Where a running instance runs, as a claim found it."""

    org_id: str
    server: _Server


# Running instances' routes, by instance id (db/changes.py). A change to an instance's status,
# server or org, or to any server's address, is announced on `forkyard_instances`
# (db/migrations/repeatable/instance_changes.sql).
routes = changes.register(
    ListenedCache[_Route](
        "forkyard_instances", ttl_s=30.0, tables=("compute_servers",), keyed_by="instances"
    )
)


def _hot_statements() -> tuple[str, str]:
    """The exec hot path's statements, compiled once for `Database.plain()` (ADR 0008).

    CLAIM: the instance and its server, and, when it is running, its activity stamp (for the
    idle timeout) in the same statement. CLAIM_EXEC: the same, and the exec's `running` record,
    which the idle sweep honours while a long command runs."""
    instances: Table = Instance.__table__  # type: ignore[assignment]
    records: Table = ExecRecord.__table__  # type: ignore[assignment]
    target = (
        select(
            Instance.id.label("instance_id"),
            Instance.status,
            ComputeServer.id.label("server_id"),
            ComputeServer.url,
            ComputeServer.secret_encrypted,
        )
        .select_from(Instance)
        .outerjoin(ComputeServer, ComputeServer.id == Instance.server_id)
        .where(Instance.id == bindparam("p_instance_id"), Instance.org_id == bindparam("p_org_id"))
        .cte("target")
    )
    running = select(target.c.instance_id).where(target.c.status == literal_column("'running'"))
    touched = (
        update(instances)
        .where(instances.c.id.in_(running))
        .values(last_activity_at=bindparam("p_now"))
        .returning(instances.c.id)
        .cte("touched")
    )
    started_columns = ("id", "instance_id", "org_id", "command", "streamed")
    started = (
        pg_insert(records)
        .from_select(
            [*started_columns, "status", "created_at"],
            select(
                *(bindparam(f"p_{c}", type_=records.c[c].type) for c in started_columns),
                literal_column("'running'"),
                bindparam("p_now", type_=records.c.created_at.type),
            ).where(exists(select(touched.c.id))),
        )
        .cte("started")
    )
    found = select(target.c.status, target.c.server_id, target.c.url, target.c.secret_encrypted)
    return (
        plain_sql(found.add_cte(touched)),
        plain_sql(found.add_cte(touched).add_cte(started)),
    )


def _end_statements() -> tuple[str, str]:
    """EXEC_ENDED: the record's end (only from `running`, so an exec ends once), a second
    activity stamp (idleness counts from the end of a command) and, when the record ended, the
    `exec.finished` event's row. EXEC_ENDED_HEARD: the same, and an `events.deliver` job per
    listening subscriber (`p_job_ids`, `p_subscribers`: the kernel's emit, in SQL), with the
    workers' wake-up (jobs.queue.enqueue's NOTIFY). No listener, no job (ADR 0011)."""
    instances: Table = Instance.__table__  # type: ignore[assignment]
    records: Table = ExecRecord.__table__  # type: ignore[assignment]
    events: Table = EventRecord.__table__  # type: ignore[assignment]
    jobs: Table = Job.__table__  # type: ignore[assignment]
    # The end touches the instance unconditionally: the claim already checked the org.
    touched = (
        update(instances)
        .where(instances.c.id == bindparam("p_instance_id"))
        .values(last_activity_at=bindparam("p_now"))
        .returning(instances.c.id)
        .cte("touched")
    )
    ended = (
        update(records)
        .where(records.c.id == bindparam("p_id"), records.c.status == literal_column("'running'"))
        .values(
            status=bindparam("p_status"),
            exit_code=bindparam("p_exit_code"),
            duration_ms=bindparam("p_duration_ms"),
            finished_at=bindparam("p_now"),
        )
        .returning(records.c.id)
        .cte("ended")
    )
    columns = (
        "org_id",
        "type",
        "version",
        "resource_type",
        "resource_id",
        "actor_type",
        "actor_id",
    )
    recorded = pg_insert(events).from_select(
        ["id", "created_at", *columns, "payload"],
        select(
            bindparam("p_event_id", type_=events.c.id.type),
            bindparam("p_now", type_=events.c.created_at.type),
            *(bindparam(f"p_{c}", type_=events.c[c].type) for c in columns),
            cast(bindparam("p_payload", type_=Text), JSONB),
        ).where(exists(select(ended.c.id))),
    )
    listeners = func.unnest(
        bindparam("p_job_ids", type_=ARRAY(Text)), bindparam("p_subscribers", type_=ARRAY(Text))
    ).table_valued("id", "subscriber")
    listeners = listeners.render_derived(name="listeners")
    queued = (
        pg_insert(jobs)
        .from_select(
            ["id", "created_at", "run_at", "name", "payload", "status", "attempts", "max_attempts"],
            select(
                listeners.c.id,
                bindparam("p_now", type_=jobs.c.created_at.type),
                bindparam("p_now", type_=jobs.c.run_at.type),
                literal_column(f"'{DELIVER_JOB}'"),
                func.jsonb_build_object(
                    literal_column("'event_id'"),
                    cast(bindparam("p_event_id"), Text),
                    literal_column("'subscriber'"),
                    listeners.c.subscriber,
                ),
                literal_column("'queued'"),
                literal_column("0"),
                literal_column(str(DELIVER_ATTEMPTS)),
            ).where(exists(select(ended.c.id))),
        )
        .returning(jobs.c.id)
        .cte("queued")
    )
    woken = select(
        func.pg_notify(literal_column("'forkyard_jobs'"), literal_column(f"'{DELIVER_JOB}'"))
    ).where(exists(select(queued.c.id)))
    return (
        plain_sql(recorded.add_cte(touched, ended)),
        plain_sql(
            woken.add_cte(touched, ended, recorded.returning(events.c.id).cte("recorded"), queued)
        ),
    )


CLAIM, CLAIM_EXEC = _hot_statements()
EXEC_ENDED, EXEC_ENDED_HEARD = _end_statements()


async def claim(
    request: Request,
    principal: Principal,
    instance_id: str,
    *,
    exec_command: str | list[str] | None = None,
    streamed: bool = False,
) -> Target:
    """Claim the running instance for one call: its node, its activity stamp and (for an
    exec) the exec's `running` record, in one statement on a plain connection held only for
    that statement, so nothing is held while the instance works. When the instance's route is
    cached, the statement runs beside the node call instead of before it. This is the exec hot
    path (ADR 0007, bench/compute.py)."""
    if not has_prefix(instance_id, "inst") or principal.org_id is None:
        raise NotFound.of("Instance", instance_id)
    db = database(request)
    params: dict[str, Any] = {
        "p_instance_id": instance_id,
        "p_org_id": principal.org_id,
        "p_now": utcnow(),
    }
    if exec_command is not None:
        params["p_id"] = new_id("exec")
        params["p_command"] = command_text(exec_command)[:10000]
        params["p_streamed"] = streamed
    statement = CLAIM if exec_command is None else CLAIM_EXEC
    secret_key = settings_of(request).secret_key
    route = routes.get(instance_id)
    if route is not None and route.org_id == principal.org_id:
        target = Target(
            instance_id=instance_id,
            node=node_clients.for_server(route.server, secret_key),
            db=db,
            org_id=principal.org_id,
            actor=Actor.of(principal),
            exec_id=params.get("p_id"),
            streamed=streamed,
        )
        target.claimed = asyncio.create_task(_claim_beside(db, statement, params))
        return target
    generation = routes.generation
    row = await db.plain(statement, params)
    if row is None:
        raise NotFound.of("Instance", instance_id)
    status, server_id, url, secret = row
    if status != "running":
        raise InstanceNotRunning(f"Instance {instance_id} is {status}.", details={"status": status})
    if server_id is None:
        raise NodeUnreachable()
    server = _Server(server_id, url, secret)
    routes.put(instance_id, _Route(principal.org_id, server), generation)
    return Target(
        instance_id=instance_id,
        node=node_clients.for_server(server, secret_key),
        db=db,
        org_id=principal.org_id,
        actor=Actor.of(principal),
        exec_id=params.get("p_id"),
        streamed=streamed,
    )


async def _claim_beside(db: Database, statement: str, params: dict[str, Any]) -> None:
    """The claim's writes for a cached route. Should the database no longer see the instance
    running (the announcement is still on its way), the route is dropped; the node, which
    knows, has answered the call already."""
    row = await db.plain(statement, params)
    if row is None or row[0] != "running":
        routes.forget(params["p_instance_id"])


def command_text(command: str | list[str]) -> str:
    return command if isinstance(command, str) else shlex.join(command)


# Exec records being closed while their answers go out, by instance.
_closing: dict[str, set[asyncio.Task[None]]] = {}


def close_beside_answer(finish: Coroutine[Any, Any, None], instance_id: str) -> None:
    """Close an exec's record while its answer is sent rather than before: the caller has the
    result already, and the round trip is a tenth of the route's time (ADR 0007). The history
    (`history.list_execs`) waits for the records this process is still closing, so a caller always sees
    its own execs finished. A record a crash leaves `running` keeps no instance up past the
    longest exec timeout (service.stop_idle_instances)."""
    task = asyncio.create_task(finish)
    closing = _closing.setdefault(instance_id, set())
    closing.add(task)

    def drop(done: asyncio.Task[None]) -> None:
        closing.discard(done)
        if not closing:
            _closing.pop(instance_id, None)

    task.add_done_callback(drop)


async def closed(instance_id: str) -> None:
    """Wait for the exec records of this instance that this process is still closing."""
    await asyncio.gather(*_closing.get(instance_id, ()))
