"""Background jobs on the same PostgreSQL: enqueued in the caller's transaction, retried with backoff."""

from forkyard.jobs.queue import enqueue, job

__all__ = ["enqueue", "job"]
