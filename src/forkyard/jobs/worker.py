"""The worker: claims due jobs with SKIP LOCKED, runs each in its own transaction, retries with
exponential backoff, and keeps jobs that fail for good as status `failed`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import traceback
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, bindparam, literal_column, or_, select, update
from sqlalchemy.dialects.postgresql import insert

from forkyard.config import Settings
from forkyard.db.engine import Database, plain_sql
from forkyard.jobs.models import Job, WorkerHeartbeat
from forkyard.jobs.queue import HANDLERS, PERIODIC, JobContext
from forkyard.kit.clock import utcnow

log = logging.getLogger("forkyard.worker")

HEARTBEAT_EVERY_S = 5.0
POLL_EVERY_S = 0.5


@dataclass(frozen=True)
class Claimed:
    id: str
    name: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int


def _claim_statement() -> str:
    """Claim the next due job in one statement (an autocommit UPDATE around a SKIP LOCKED
    pick) rather than a transaction of four round trips: it sits between every enqueue and
    its run (a boot's, for one), and every idle poll makes it."""
    live_workers = select(WorkerHeartbeat.worker_id).where(
        WorkerHeartbeat.last_seen > bindparam("p_live_after")
    )
    due = (
        select(Job.id)
        .where(
            or_(
                and_(Job.status == literal_column("'queued'"), Job.run_at <= bindparam("p_now")),
                # Claimed by a worker that died mid-job: run it again (handlers are safe to
                # re-run).
                and_(
                    Job.status == literal_column("'running'"),
                    Job.locked_at < bindparam("p_abandoned_before"),
                    Job.locked_by.not_in(live_workers),
                ),
            )
        )
        .order_by(Job.run_at)
        .limit(literal_column("1"))
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    claim = (
        update(Job)
        .where(Job.id == due)
        .values(
            status=literal_column("'running'"),
            attempts=Job.attempts + literal_column("1"),
            locked_by=bindparam("p_worker"),
            locked_at=bindparam("p_now"),
        )
        .returning(Job.id, Job.name, Job.payload, Job.attempts, Job.max_attempts)
    )
    return plain_sql(claim)


CLAIM = _claim_statement()


def backoff(attempt: int) -> timedelta:
    return timedelta(seconds=min(2**attempt, 600))


class Worker:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        concurrency: int = 4,
        worker_id: str | None = None,
        poll_every_s: float = POLL_EVERY_S,
    ) -> None:
        self.db = db
        self.settings = settings
        db.info.setdefault("secret_key", settings.secret_key)
        self.concurrency = concurrency
        # LISTEN/NOTIFY wakes the loop at once; the poll is only the fallback (and for run_at).
        self.poll_every_s = poll_every_s
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}"
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(concurrency)
        self._running: set[asyncio.Task[None]] = set()

    async def heartbeat(self) -> None:
        now = utcnow()
        async with self.db.transaction() as session:
            stmt = insert(WorkerHeartbeat).values(
                worker_id=self.worker_id, last_seen=now, started_at=now
            )
            await session.execute(
                stmt.on_conflict_do_update(
                    index_elements=["worker_id"], set_={"last_seen": stmt.excluded.last_seen}
                )
            )

    async def claim(self) -> Claimed | None:
        """The next due job, marked running for this worker, in one statement."""
        now = utcnow()
        params = {
            "p_now": now,
            "p_worker": self.worker_id,
            "p_live_after": now - timedelta(seconds=self.settings.worker_heartbeat_stale_s),
            "p_abandoned_before": now - timedelta(seconds=60),
        }
        row = await self.db.plain(CLAIM, params)
        return Claimed(*row) if row is not None else None

    async def run_one(self, claimed: Claimed) -> None:
        handler = HANDLERS.get(claimed.name)
        error: str | None = None
        if handler is None:
            error = f"no handler registered for job {claimed.name!r}"
        else:
            try:
                async with self.db.transaction() as session:
                    ctx = JobContext(session, self.settings, claimed.id, claimed.attempts)
                    await handler(ctx, dict(claimed.payload))
                    # Done commits with the handler's own changes: one transaction per job
                    # instead of two (a webhook fan-out makes a hundred jobs), and a job
                    # whose work committed is never run again for want of its mark.
                    await session.execute(
                        update(Job)
                        .where(Job.id == claimed.id)
                        .values(status="done", finished_at=utcnow(), last_error=None)
                    )
                return
            except Exception:
                error = traceback.format_exc(limit=8)
                log.warning("job %s (%s) failed: %s", claimed.id, claimed.name, error)
        async with self.db.transaction() as session:
            values: dict[str, object]
            if claimed.attempts >= claimed.max_attempts or handler is None:
                values = {"status": "failed", "finished_at": utcnow(), "last_error": error}
            else:
                values = {
                    "status": "queued",
                    "run_at": utcnow() + backoff(claimed.attempts),
                    "last_error": error,
                }
            await session.execute(update(Job).where(Job.id == claimed.id).values(**values))

    async def run_until_idle(self) -> int:
        """Run due jobs until none is left (tests and `forkyard worker --once`)."""
        count = 0
        while (claimed := await self.claim()) is not None:
            await self.run_one(claimed)
            count += 1
        return count

    async def _listen(self) -> None:
        import psycopg

        from forkyard.db.engine import libpq_url

        url = libpq_url(self.db.url)
        while not self._stop.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                    await conn.execute("LISTEN forkyard_jobs")
                    async for _ in conn.notifies():
                        self._wake.set()
            except Exception as exc:  # the poll loop still runs; reconnect shortly
                log.debug("job LISTEN connection lost: %s", exc)
                await asyncio.sleep(1)

    async def _heartbeats(self) -> None:
        while not self._stop.is_set():
            try:
                await self.heartbeat()
            except Exception as exc:
                log.warning("worker heartbeat failed: %s", exc)
            try:
                await asyncio.wait_for(self._stop.wait(), HEARTBEAT_EVERY_S)
            except TimeoutError:
                pass

    async def _periodic(self, name: str, every_s: float) -> None:
        _, handler = PERIODIC[name]
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), every_s)
            if self._stop.is_set():
                return
            try:
                async with self.db.transaction() as session:
                    await handler(JobContext(session, self.settings, name, 0), {})
            except Exception as exc:
                log.warning("periodic %s failed: %s", name, exc)

    async def run_periodic_now(self) -> None:
        """Run every periodic sweep once (tests)."""
        for name, (_, handler) in PERIODIC.items():
            async with self.db.transaction() as session:
                await handler(JobContext(session, self.settings, name, 0), {})

    async def _spawn(self, claimed: Claimed) -> None:
        async def run() -> None:
            try:
                await self.run_one(claimed)
            finally:
                self._slots.release()

        task = asyncio.create_task(run())
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def run(self) -> None:
        log.info("worker %s started (concurrency %d)", self.worker_id, self.concurrency)
        helpers = [asyncio.create_task(self._listen()), asyncio.create_task(self._heartbeats())]
        helpers += [
            asyncio.create_task(self._periodic(n, every)) for n, (every, _) in PERIODIC.items()
        ]
        try:
            while not self._stop.is_set():
                await self._slots.acquire()
                # Cleared before claiming, so a NOTIFY that lands during the claim is not lost.
                self._wake.clear()
                try:
                    claimed = await self.claim()
                except Exception as exc:
                    self._slots.release()
                    log.warning("claiming a job failed: %s", exc)
                    await asyncio.sleep(POLL_EVERY_S)
                    continue
                if claimed is not None:
                    await self._spawn(claimed)
                    continue
                self._slots.release()
                try:
                    await asyncio.wait_for(self._wake.wait(), self.poll_every_s)
                except TimeoutError:
                    pass
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*self._running, *helpers, return_exceptions=True)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
