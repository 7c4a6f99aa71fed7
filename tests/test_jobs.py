"""The job queue on PostgreSQL: transactional enqueue, retries with backoff, failures kept,
NOTIFY wake-up, and jobs of a dead worker picked up again."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from forkyard.jobs import enqueue, job
from forkyard.jobs.models import Job
from forkyard.jobs.queue import JobContext, enqueue_many
from forkyard.jobs.worker import Worker
from forkyard.kit.clock import clock, utcnow

CALLS: list[dict[str, Any]] = []
FAIL_TIMES: dict[str, int] = {}


@job("test.record")
async def record_call(ctx: JobContext, payload: dict[str, Any]) -> None:
    CALLS.append({**payload, "attempt": ctx.attempt})
    remaining = FAIL_TIMES.get(payload.get("tag", ""), 0)
    if remaining:
        FAIL_TIMES[payload["tag"]] = remaining - 1
        raise RuntimeError(f"planned failure for {payload['tag']}")


@pytest.fixture(autouse=True)
def _clean() -> None:
    CALLS.clear()
    FAIL_TIMES.clear()


async def _job(db, job_id: str) -> Job:  # type: ignore[no-untyped-def]
    async with db.sessions() as session:
        return (await session.execute(select(Job).where(Job.id == job_id))).scalar_one()


async def test_job_enqueued_in_a_rolled_back_transaction_never_runs(db, settings):
    class Abort(Exception):
        pass

    with pytest.raises(Abort):
        async with db.transaction() as session:
            await enqueue(session, "test.record", {"tag": "rolled-back"})
            raise Abort
    async with db.transaction() as session:
        await enqueue(session, "test.record", {"tag": "committed"})
    assert await Worker(db, settings).run_until_idle() == 1
    assert [c["tag"] for c in CALLS] == ["committed"]


async def test_jobs_enqueued_together_exist_only_if_their_transaction_commits(db, settings):
    class Abort(Exception):
        pass

    with pytest.raises(Abort):
        async with db.transaction() as session:
            await enqueue_many(session, "test.record", [{"tag": "gone-1"}, {"tag": "gone-2"}])
            raise Abort
    async with db.transaction() as session:
        await enqueue_many(session, "test.record", [{"tag": f"many-{i}"} for i in range(3)])
        await enqueue_many(session, "test.record", [])
    assert await Worker(db, settings).run_until_idle() == 3
    assert sorted(c["tag"] for c in CALLS) == ["many-0", "many-1", "many-2"]
    async with db.sessions() as session:
        rows = (await session.execute(select(Job))).scalars().all()
    assert {(r.status, r.attempts) for r in rows} == {("done", 1)}


async def test_retries_with_backoff_then_success(db, settings):
    FAIL_TIMES["flaky"] = 2
    async with db.transaction() as session:
        job_id = (await enqueue(session, "test.record", {"tag": "flaky"})).id
    worker = Worker(db, settings)
    assert await worker.run_until_idle() == 1  # attempt 1 fails
    row = await _job(db, job_id)
    assert (
        row.status == "queued" and row.attempts == 1 and "planned failure" in (row.last_error or "")
    )
    assert row.run_at > utcnow()
    assert await worker.run_until_idle() == 0  # not due yet: backing off
    clock.advance(timedelta(seconds=2))
    assert await worker.run_until_idle() == 1  # attempt 2 fails, waits longer
    clock.advance(timedelta(seconds=2))
    assert await worker.run_until_idle() == 0
    clock.advance(timedelta(seconds=2))
    assert await worker.run_until_idle() == 1  # attempt 3 succeeds
    row = await _job(db, job_id)
    assert row.status == "done" and row.attempts == 3 and row.last_error is None
    assert [c["attempt"] for c in CALLS] == [1, 2, 3]


async def test_job_failing_for_good_is_kept_with_its_error(db, settings):
    FAIL_TIMES["doomed"] = 99
    async with db.transaction() as session:
        job_id = (await enqueue(session, "test.record", {"tag": "doomed"}, max_attempts=3)).id
        unknown_id = (await enqueue(session, "test.no-such-handler", {})).id
    worker = Worker(db, settings)
    for _ in range(3):
        await worker.run_until_idle()
        clock.advance(timedelta(minutes=10))
    row = await _job(db, job_id)
    assert row.status == "failed" and row.attempts == 3 and row.finished_at is not None
    assert "planned failure for doomed" in (row.last_error or "")
    unknown = await _job(db, unknown_id)
    assert unknown.status == "failed" and "no handler" in (unknown.last_error or "")
    clock.advance(timedelta(hours=1))
    assert await worker.run_until_idle() == 0  # failed jobs stay put


async def test_running_worker_wakes_on_notify(db, settings):
    # A 60 s poll: only LISTEN/NOTIFY can explain a pickup within a few seconds.
    worker = Worker(db, settings, poll_every_s=60)
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.sleep(1.0)  # let it connect, LISTEN and go idle
        async with db.transaction() as session:
            await enqueue(session, "test.record", {"tag": "wake"})
        for _ in range(50):
            if CALLS:
                break
            await asyncio.sleep(0.1)
        assert [c["tag"] for c in CALLS] == ["wake"]
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)


async def test_job_of_a_dead_worker_runs_again(db, settings):
    async with db.transaction() as session:
        row = await enqueue(session, "test.record", {"tag": "orphan"})
        row.status, row.locked_by, row.locked_at, row.attempts = "running", "dead:1", utcnow(), 1
    worker = Worker(db, settings)
    assert await worker.run_until_idle() == 0  # maybe still running somewhere
    clock.advance(timedelta(minutes=5))
    assert await worker.run_until_idle() == 1
    assert (await _job(db, row.id)).status == "done"


async def test_finished_jobs_are_pruned_after_the_retention(db, settings):
    from forkyard.tasks import load_all_tasks

    load_all_tasks()
    async with db.transaction() as session:
        await enqueue(session, "test.record", {"tag": "old"})
        await enqueue(session, "test.record", {"tag": "fresh"})
    worker = Worker(db, settings)
    assert await worker.run_until_idle() == 2
    async with db.transaction() as session:
        rows = (await session.execute(select(Job))).scalars().all()
        for row in rows:
            if row.payload["tag"] == "old":
                row.finished_at = utcnow() - timedelta(seconds=settings.job_retention_s + 60)
    await worker.run_periodic_now()
    async with db.sessions() as session:
        left = [r.payload["tag"] for r in (await session.execute(select(Job))).scalars()]
    assert left == ["fresh"]
