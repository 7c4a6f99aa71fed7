"""The events kernel: typed, versioned facts, `emit()` inside the transaction that caused
them, and subscribers that each run as their own job, at least once and in effect once.

    class InstanceRunning(InstanceEvent):
        type = "instance.running"

    await emit(session, InstanceRunning.of(instance))          # where the fact happens

    @subscriber(InstanceRunning)                               # in the reacting domain's events.py
    async def greet(ctx: JobContext, event: InstanceRunning) -> None: ...

`emit` adds the event's row and, for each subscriber of its type (whose `condition`, if it has
one, holds), an `events.deliver` job to the caller's session: a rolled-back transaction leaves
neither, a committed one both (see docs/adr/0011-domain-events.md)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, PrivateAttr
from sqlalchemy import (
    ColumnElement,
    Executable,
    String,
    Table,
    bindparam,
    exists,
    func,
    literal,
    select,
    true,
    union_all,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from forkyard.db.engine import Database
from forkyard.events.models import EventRecord, SubscriberRun
from forkyard.jobs import job
from forkyard.jobs.models import Job
from forkyard.jobs.queue import JobContext, enqueue_many
from forkyard.kit.clock import utcnow
from forkyard.kit.ids import new_id

DELIVER_JOB = "events.deliver"
# A subscriber's job is retried with the queue's backoff this many times before it is kept as
# failed (an operator can re-queue it; its SubscriberRun row is absent, so it runs in full).
DELIVER_ATTEMPTS = 8


class Acting(Protocol):
    """Whoever caused a fact: a Principal fits (kind and actor_id)."""

    @property
    def kind(self) -> str: ...

    @property
    def actor_id(self) -> str | None: ...


class Actor(BaseModel):
    model_config = ConfigDict(frozen=True)

    type: str = "system"  # user, api_key, node, system, anonymous
    id: str | None = None

    @classmethod
    def of(cls, who: Acting | None) -> Actor:
        return SYSTEM if who is None else cls(type=who.kind, id=who.actor_id)


SYSTEM = Actor()

# (type, version) -> class: every event class ever declared, for reading rows back and for the
# catalogue (README, the events API of issue 14).
CATALOGUE: dict[tuple[str, int], type[Event]] = {}


class Event(BaseModel):
    """A fact. Subclasses set `type` ("instance.running"), `version` (bumped when the payload
    changes incompatibly; the old class stays to read old rows) and `resource_type`; their own
    fields are the payload."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: ClassVar[str]
    version: ClassVar[int] = 1
    resource_type: ClassVar[str]
    # Envelope: which org it concerns (None: none, e.g. a user's account before any org), on
    # which resource, and who caused it.
    ENVELOPE: ClassVar[frozenset[str]] = frozenset({"org_id", "resource_id", "actor"})

    org_id: str | None
    resource_id: str
    actor: Actor = SYSTEM
    # The stored row this event was read from (Event.from_record): subscribers that keep
    # their own record per event (a webhook delivery, a notice) key it on the row's id.
    _record: EventRecord | None = PrivateAttr(default=None)

    @property
    def record(self) -> EventRecord:
        if self._record is None:
            raise RuntimeError("this event was not read from a stored row")
        return self._record

    def __eq__(self, other: object) -> bool:
        # A fact is its class and its fields; the stored row it was read from is not part of it.
        return type(other) is type(self) and self.model_dump() == other.model_dump()

    def __hash__(self) -> int:
        return hash((type(self), json.dumps(self.model_dump(mode="json"), sort_keys=True)))

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "type" in cls.__dict__:  # a concrete event, not an abstract base of a domain's events
            key = (cls.type, cls.version)
            if key in CATALOGUE and CATALOGUE[key].__qualname__ != cls.__qualname__:
                raise TypeError(f"event {key} is declared twice")
            CATALOGUE[key] = cls

    def payload(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude=set(self.ENVELOPE))

    def row_values(self) -> dict[str, Any]:
        """Its `events` row's columns, but the id and creation time (emit, and the emitters
        that write the row themselves: the exec hot path)."""
        return {
            "org_id": self.org_id,
            "type": self.type,
            "version": self.version,
            "resource_type": self.resource_type,
            "resource_id": self.resource_id,
            "actor_type": self.actor.type,
            "actor_id": self.actor.id,
            "payload": self.payload(),
        }

    @classmethod
    def from_record(cls, row: EventRecord) -> Event:
        """The typed event behind a stored row, whatever class it was emitted as."""
        event_cls = CATALOGUE[(row.type, row.version)]
        event = event_cls(
            org_id=row.org_id,
            resource_id=row.resource_id,
            actor=Actor(type=row.actor_type, id=row.actor_id),
            **row.payload,
        )
        event._record = row
        return event


E = TypeVar("E", bound=Event)
SubscriberFn = Callable[[JobContext, Any], Awaitable[None]]
# Whether a subscriber would act on an event of (org, type) at all: asked by `audience()`, on
# paths where a job per event costs more than asking (a cached answer, usually).
Audience = Callable[[Database, str | None, str], Awaitable[bool]]
# The same question in SQL, for emit(): a boolean expression of the event's org and type, given
# as bound parameters (the statement is built once per event type and reused).
Condition = Callable[[ColumnElement[str], ColumnElement[str]], ColumnElement[bool]]


@dataclass(frozen=True)
class Subscriber:
    name: str  # stable: it is stored in jobs and in event_subscriber_runs
    event_type: str
    fn: SubscriberFn
    audience: Audience | None = None  # None: it acts on every event of its type
    # Whether it acts on an event of (org, type), as a SQL condition that emit() puts in the
    # statement inserting the jobs (the caller's transaction sees what it sees). None: always.
    condition: Condition | None = None


# event type -> its subscribers, filled as the domains' events.py modules are imported
# (forkyard.tasks.load_all_tasks imports every one of them).
SUBSCRIBERS: dict[str, list[Subscriber]] = {}
_BY_NAME: dict[str, Subscriber] = {}
_loaded = False


def subscriber(
    event: type[E] | str,
    *,
    name: str | None = None,
    audience: Audience | None = None,
    condition: Condition | None = None,
) -> Callable[
    [Callable[[JobContext, E], Awaitable[None]]], Callable[[JobContext, E], Awaitable[None]]
]:
    """Run the decorated function as a job for each committed event of this type (by class or
    by type name). It may run more than once for one event (at least once); its changes commit
    with the record that it ran, so a second run does nothing. `audience`, when given, lets a
    hot-path emitter skip its job for an org where it would do nothing (`audience()`);
    `condition`, the same question in SQL, lets emit() skip it. Both must hold whenever the
    subscriber could act: a job skipped is final."""
    event_type = event if isinstance(event, str) else event.type

    def register(
        fn: Callable[[JobContext, E], Awaitable[None]],
    ) -> Callable[[JobContext, E], Awaitable[None]]:
        sub = Subscriber(
            name or f"{fn.__module__}.{fn.__qualname__}", event_type, fn, audience, condition
        )
        if sub.name in _BY_NAME and _BY_NAME[sub.name].event_type != event_type:
            raise TypeError(f"subscriber name {sub.name!r} is taken")
        if sub.name not in _BY_NAME:
            _BY_NAME[sub.name] = sub
            SUBSCRIBERS.setdefault(event_type, []).append(sub)
        return fn

    return register


def mark_subscribers_loaded() -> None:
    """Every domain's subscribers are registered (called by forkyard.tasks.load_all_tasks)."""
    global _loaded
    _loaded = True


def _require_loaded() -> None:
    if not _loaded:
        # A subscriber not yet imported would silently miss this event.
        raise RuntimeError("emit() before forkyard.tasks.load_all_tasks() registered subscribers")


async def emit(session: AsyncSession, event: Event) -> EventRecord:
    """Record `event` in the caller's transaction and queue its subscribers there: both exist
    only if that transaction commits. A subscriber with a `condition` gets its job only when
    the condition holds in this transaction, asked in the statement that inserts the jobs (one
    round trip for every subscriber; none at all for a type nobody subscribes to)."""
    _require_loaded()
    row = EventRecord(**event.row_values())
    session.add(row)
    subs = SUBSCRIBERS.get(event.type, ())
    if not subs:
        return row
    if all(sub.condition is None for sub in subs):
        await enqueue_many(
            session,
            DELIVER_JOB,
            [{"event_id": row.id, "subscriber": sub.name} for sub in subs],
            max_attempts=DELIVER_ATTEMPTS,
        )
        return row
    await session.execute(
        _queueing(event.type, subs),
        {"event_id": row.id, "org": event.org_id, "type": event.type, "now": utcnow()}
        | {f"job_{i}": new_id(Job.id_prefix) for i in range(len(subs))},
    )
    return row


# (type, its subscribers' names) -> emit()'s statement: built once, since building it costs
# more than running it (ms of Python per event); its values are bound per event.
_QUEUEING: dict[tuple[str, tuple[str, ...]], Executable] = {}


def _queueing(event_type: str, subs: Sequence[Subscriber]) -> Executable:
    """One SELECT per subscriber, each filtered by its condition; the INSERT takes what they
    return, and the workers are woken in the same statement only when a job was made."""
    key = (event_type, tuple(sub.name for sub in subs))
    if key in _QUEUEING:
        return _QUEUEING[key]
    jobs: Table = Job.__table__  # type: ignore[assignment]
    c = jobs.c
    org, typ = bindparam("org", type_=String), bindparam("type", type_=String)
    now = bindparam("now", type_=c.created_at.type)
    wanted = union_all(
        *(
            select(
                bindparam(f"job_{i}", type_=c.id.type).label("id"),
                now.label("created_at"),
                literal(DELIVER_JOB, c.name.type).label("name"),
                func.jsonb_build_object(
                    "event_id", bindparam("event_id", type_=String), "subscriber", sub.name
                ).label("payload"),
                literal("queued", c.status.type).label("status"),
                literal(0, c.attempts.type).label("attempts"),
                literal(DELIVER_ATTEMPTS, c.max_attempts.type).label("max_attempts"),
                now.label("run_at"),
            ).where(true() if sub.condition is None else sub.condition(org, typ))
            for i, sub in enumerate(subs)
        )
    )
    made = (
        insert(jobs)
        .from_select(
            ["id", "created_at", "name", "payload", "status", "attempts", "max_attempts", "run_at"],
            wanted,
        )
        .returning(c.id)
        .cte("made")
    )
    stmt = select(func.pg_notify(literal("forkyard_jobs"), literal(DELIVER_JOB))).where(
        exists(select(made.c.id))
    )
    _QUEUEING[key] = stmt
    return stmt


async def audience(db: Database, event: Event) -> list[str]:
    """The names of the subscribers that must see `event`: those without an audience, and those
    whose audience says its org has someone for it. For an emitter that writes the event's row
    and the `events.deliver` jobs itself, in one statement (the exec hot path,
    compute/exec/claim.py): an event nobody listens to then costs its row and no job. A job
    skipped this way is final: an audience must answer yes whenever it could act."""
    _require_loaded()
    names = []
    for sub in SUBSCRIBERS.get(event.type, ()):
        if sub.audience is None or await sub.audience(db, event.org_id, event.type):
            names.append(sub.name)
    return names


@job(DELIVER_JOB)
async def deliver(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Run one subscriber for one event, once in effect: the SubscriberRun row is claimed in
    this job's transaction, beside the subscriber's own changes. A worker that dies after the
    commit but before the job is marked done runs the job again, which finds the row (or waits
    on the uncommitted one of a run still going) and does nothing."""
    event_id, name = payload["event_id"], payload["subscriber"]
    sub = _BY_NAME.get(name)
    if sub is None:
        raise LookupError(f"no subscriber named {name!r} is registered")
    claimed = await ctx.session.execute(
        insert(SubscriberRun)
        .values(event_id=event_id, subscriber=name)
        .on_conflict_do_nothing()
        .returning(SubscriberRun.event_id)
    )
    if claimed.first() is None:
        return  # ran already
    row = await ctx.session.get(EventRecord, event_id)
    if row is None:
        return
    await sub.fn(ctx, Event.from_record(row))
