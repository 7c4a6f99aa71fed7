"""A subscriber with a `condition` gets its job only when the condition holds in the emitting
transaction; the others of the same event still get theirs, and the workers are woken."""

from __future__ import annotations

from typing import ClassVar

import pytest
from sqlalchemy import false, func, literal, select

from forkyard.events import Event, emit, subscriber
from forkyard.events.models import EventRecord
from forkyard.jobs.models import Job
from forkyard.jobs.queue import JobContext
from forkyard.jobs.worker import Worker
from forkyard.tasks import load_all_tasks

RAN: list[str] = []


class Checked(Event):
    type = "test.checked"
    resource_type: ClassVar[str] = "thing"


@subscriber(Checked, name="tests.checked_always")
async def always(ctx: JobContext, event: Checked) -> None:
    RAN.append("always")


@subscriber(Checked, name="tests.checked_never", condition=lambda org, t: false())
async def never(ctx: JobContext, event: Checked) -> None:
    RAN.append("never")


# Holds only for org_yes: the condition is built from the event's org and type.
@subscriber(
    Checked,
    name="tests.checked_org",
    condition=lambda org, t: org == literal("org_yes"),
)
async def for_org(ctx: JobContext, event: Checked) -> None:
    RAN.append(f"org:{event.org_id}")


@pytest.fixture(autouse=True)
def _loaded() -> None:
    load_all_tasks()
    RAN.clear()


async def subscribers_queued(db) -> list[str]:  # type: ignore[no-untyped-def]
    async with db.transaction() as s:
        rows = await s.execute(select(Job.payload["subscriber"].astext).order_by(Job.id))
        return sorted(rows.scalars())


async def test_only_subscribers_whose_condition_holds_get_a_job(db, settings):
    async with db.transaction() as session:
        await emit(session, Checked(org_id="org_no", resource_id="thing_1"))
        await emit(session, Checked(org_id="org_yes", resource_id="thing_2"))
    assert await subscribers_queued(db) == [
        "tests.checked_always",
        "tests.checked_always",
        "tests.checked_org",
    ]
    async with db.transaction() as s:
        assert (await s.execute(select(func.count()).select_from(EventRecord))).scalar_one() == 2
    assert await Worker(db, settings).run_until_idle() == 3
    assert sorted(RAN) == ["always", "always", "org:org_yes"]


async def test_a_rolled_back_emit_leaves_no_conditional_job(db, settings):
    with pytest.raises(ZeroDivisionError):
        async with db.transaction() as session:
            await emit(session, Checked(org_id="org_yes", resource_id="thing_3"))
            1 / 0  # noqa: B018
    assert await subscribers_queued(db) == []
    assert await Worker(db, settings).run_until_idle() == 0
