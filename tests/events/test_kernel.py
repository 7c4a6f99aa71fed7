"""The events kernel: an event and its subscribers' jobs exist only if the transaction that
emitted it commits; each subscriber runs once in effect, even when its job runs twice."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar

import pytest
from sqlalchemy import func, select, update

from forkyard.audit.models import AuditEvent
from forkyard.events import Actor, Event, emit, subscriber
from forkyard.events.kernel import CATALOGUE, DELIVER_JOB
from forkyard.events.models import EventRecord, SubscriberRun
from forkyard.jobs.models import Job, WorkerHeartbeat
from forkyard.jobs.queue import JobContext
from forkyard.jobs.worker import Worker
from forkyard.kit.clock import clock
from forkyard.kit.ids import has_prefix
from forkyard.tasks import load_all_tasks

RAN: list[tuple[str, str]] = []


class ThingHappened(Event):
    type = "test.thing_happened"
    resource_type: ClassVar[str] = "thing"
    size: int


@subscriber(ThingHappened, name="tests.audit_thing")
async def audit_thing(ctx: JobContext, event: ThingHappened) -> None:
    """A subscriber with a database effect (an audit row) and one outside it (RAN)."""
    RAN.append(("audit", event.resource_id))
    ctx.session.add(
        AuditEvent(
            org_id=event.org_id,
            actor_type=event.actor.type,
            actor_id=event.actor.id,
            action="thing.happened",
            target_type="thing",
            target_id=event.resource_id,
            data={"size": event.size},
        )
    )


@subscriber("test.thing_happened", name="tests.count_thing")
async def count_thing(ctx: JobContext, event: ThingHappened) -> None:
    assert isinstance(event, ThingHappened)
    RAN.append(("count", event.resource_id))


@pytest.fixture(autouse=True)
def _loaded() -> None:
    load_all_tasks()
    RAN.clear()


def thing(resource_id: str = "thing_1", size: int = 3) -> ThingHappened:
    return ThingHappened(
        org_id="org_x", resource_id=resource_id, actor=Actor(type="user", id="usr_1"), size=size
    )


async def count(db: Any, model: Any, *where: Any) -> int:
    async with db.transaction() as s:
        return int(
            (await s.execute(select(func.count()).select_from(model).where(*where))).scalar_one()
        )


async def test_rolled_back_emit_leaves_no_event_and_runs_no_subscriber(db, settings):
    class Abort(Exception):
        pass

    with pytest.raises(Abort):
        async with db.transaction() as session:
            await emit(session, thing("thing_rolled_back"))
            raise Abort
    assert await count(db, EventRecord) == 0
    assert await count(db, Job) == 0
    assert await Worker(db, settings).run_until_idle() == 0
    assert RAN == []


async def test_committed_event_is_stored_typed_and_runs_each_subscriber(db, settings):
    async with db.transaction() as session:
        row = await emit(session, thing(size=7))
    assert has_prefix(row.id, "evt")
    async with db.transaction() as s:
        stored = (await s.execute(select(EventRecord))).scalar_one()
    assert (stored.type, stored.version, stored.org_id) == ("test.thing_happened", 1, "org_x")
    assert (stored.resource_type, stored.resource_id) == ("thing", "thing_1")
    assert (stored.actor_type, stored.actor_id, stored.payload) == ("user", "usr_1", {"size": 7})
    assert Event.from_record(stored) == thing(size=7)
    assert await count(db, Job, Job.name == DELIVER_JOB) == 2
    assert await Worker(db, settings).run_until_idle() == 2
    assert sorted(RAN) == [("audit", "thing_1"), ("count", "thing_1")]
    assert await count(db, AuditEvent, AuditEvent.action == "thing.happened") == 1
    assert await count(db, SubscriberRun, SubscriberRun.event_id == row.id) == 2


async def test_job_run_again_after_a_worker_died_does_nothing_twice(db, settings):
    """The worker commits the subscriber's transaction, then dies before marking the job
    done; another worker takes the abandoned job and finds the subscriber already ran."""
    async with db.transaction() as session:
        await emit(session, thing("thing_twice"))
    dying = Worker(db, settings, worker_id="dying")
    await dying.heartbeat()
    claimed = [await dying.claim(), await dying.claim()]
    assert all(c is not None for c in claimed)
    # What run_one does up to the crash: the handler's transaction commits...
    from forkyard.jobs.queue import HANDLERS

    for c in claimed:
        assert c is not None
        async with db.transaction() as session:
            await HANDLERS[c.name](JobContext(session, settings, c.id, c.attempts), dict(c.payload))
    # ...and the worker dies: its jobs stay `running`, its heartbeat goes stale.
    assert await count(db, Job, Job.status == "running") == 2
    assert sorted(RAN) == [("audit", "thing_twice"), ("count", "thing_twice")]
    clock.advance(timedelta(seconds=settings.worker_heartbeat_stale_s + 61))
    async with db.transaction() as s:
        await s.execute(update(WorkerHeartbeat).values(last_seen=clock.now() - timedelta(hours=1)))
    assert await Worker(db, settings, worker_id="survivor").run_until_idle() == 2
    assert await count(db, Job, Job.status == "done") == 2
    async with db.transaction() as s:
        attempts = (await s.execute(select(Job.attempts))).scalars().all()
    assert attempts == [2, 2]  # each job really ran again...
    assert sorted(RAN) == [("audit", "thing_twice"), ("count", "thing_twice")]  # ...to no effect
    assert await count(db, AuditEvent, AuditEvent.action == "thing.happened") == 1


async def test_failing_subscriber_is_retried_without_rerunning_the_others(db, settings):
    calls: list[int] = []

    class Flaky(Event):
        type = "test.flaky"
        resource_type: ClassVar[str] = "thing"

    @subscriber(Flaky, name="tests.flaky_once")
    async def flaky_once(ctx: JobContext, event: Flaky) -> None:
        calls.append(ctx.attempt)
        ctx.session.add(AuditEvent(actor_type="system", action="flaky.ran", data={}))
        if ctx.attempt == 1:
            raise RuntimeError("planned")

    @subscriber(Flaky, name="tests.flaky_steady")
    async def steady(ctx: JobContext, event: Flaky) -> None:
        RAN.append(("steady", event.resource_id))

    async with db.transaction() as session:
        await emit(session, Flaky(org_id=None, resource_id="thing_f"))
    worker = Worker(db, settings)
    assert await worker.run_until_idle() == 2
    assert calls == [1] and RAN == [("steady", "thing_f")]
    # The failed run left no trace: neither its audit row nor its SubscriberRun.
    assert await count(db, AuditEvent, AuditEvent.action == "flaky.ran") == 0
    clock.advance(timedelta(seconds=5))
    assert await worker.run_until_idle() == 1
    assert calls == [1, 2] and RAN == [("steady", "thing_f")]
    assert await count(db, AuditEvent, AuditEvent.action == "flaky.ran") == 1


def test_every_event_type_is_in_the_readme_catalogue():
    load_all_tasks()
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    missing = [t for t, _ in CATALOGUE if not t.startswith("test.") and f"`{t}`" not in readme]
    assert missing == []
