"""Email: SMTP against a real local aiosmtpd server, and the outbox when no SMTP is set."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from email import message_from_bytes, policy
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.helpers import last_link, outbox, signup


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.content, policy=policy.default)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, Inbox]]:
    inbox = Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield port, inbox
    controller.stop()


async def test_signup_mail_goes_over_smtp(client, settings, run_jobs, smtp_server):
    port, inbox = smtp_server
    settings.smtp_url = f"smtp://127.0.0.1:{port}"
    await signup(client, "smtp@example.com")
    assert inbox.messages == []  # queued in the request, sent by the worker
    await run_jobs()
    for _ in range(20):
        if inbox.messages:
            break
        await asyncio.sleep(0.05)
    [(sender, rcpts, msg)] = inbox.messages
    assert rcpts == ["smtp@example.com"] and "no-reply@forkyard.local" in sender
    assert msg["Subject"] == "Verify your email for Forkyard"
    assert "/v1/auth/verify-email?token=" in msg.get_content()
    assert not settings.outbox_dir.exists()  # nothing went to the outbox


async def test_smtp_failure_is_retried_not_lost(client, settings, run_jobs, db):
    from sqlalchemy import select

    from forkyard.jobs.models import Job

    settings.smtp_url = f"smtp://127.0.0.1:{_free_port()}"  # nobody listens there
    await signup(client, "retry@example.com")
    await run_jobs()
    async with db.sessions() as session:
        row = (await session.execute(select(Job).where(Job.name == "mail.send"))).scalar_one()
    assert row.status == "queued" and row.attempts == 1 and row.last_error


async def test_without_smtp_mail_lands_in_the_outbox(client, settings, run_jobs, caplog):
    assert settings.smtp_url is None
    caplog.set_level("INFO", logger="forkyard.mail")
    await signup(client, "out@example.com")
    await run_jobs()
    files = list(settings.outbox_dir.glob("*.eml"))
    assert len(files) == 1 and files[0].name.endswith("out@example.com.eml")
    [msg] = outbox(settings)
    assert msg["To"] == "out@example.com"
    token = last_link(settings, "out@example.com")
    assert token not in caplog.text  # outside development a link never reaches a log
    settings.env = "development"
    await signup(client, "dev@example.com")
    await run_jobs()
    assert last_link(settings, "dev@example.com") in caplog.text  # handy on a laptop


async def test_job_rows_carry_no_one_time_link(client, settings, run_jobs, db):
    from sqlalchemy import text

    await signup(client, "sealed@example.com")
    async with db.sessions() as session:
        queued = (await session.execute(text("SELECT payload::text FROM jobs"))).scalars().all()
    await run_jobs()
    token = last_link(settings, "sealed@example.com")
    assert queued and not any(token in row or "token=" in row for row in queued)
