"""Email is queued as a job inside the caller's transaction and delivered by the worker, so a
rolled-back request never sends mail."""

from __future__ import annotations

import logging
import re
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import aiosmtplib
from sqlalchemy.ext.asyncio import AsyncSession

from forkyard.config import Settings
from forkyard.jobs import enqueue, job
from forkyard.jobs.queue import JobContext, seal, unseal
from forkyard.kit.clock import utcnow

log = logging.getLogger("forkyard.mail")

_LINK = re.compile(r"https?://\S+")


def build_message(settings: Settings, to: str, subject: str, body: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = settings.mail_from
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="forkyard.local")
    msg.set_content(body)
    return msg


async def deliver(settings: Settings, msg: EmailMessage) -> None:
    if settings.smtp_url:
        url = urlsplit(settings.smtp_url)
        await aiosmtplib.send(
            msg,
            hostname=url.hostname or "localhost",
            port=url.port or (465 if url.scheme == "smtps" else 25),
            username=unquote(url.username) if url.username else None,
            password=unquote(url.password) if url.password else None,
            use_tls=url.scheme == "smtps",
            start_tls=None if url.scheme == "smtps" else (url.scheme == "smtp+starttls"),
            timeout=30,
        )
        return
    outbox = settings.outbox_dir
    outbox.mkdir(parents=True, exist_ok=True)
    stamp = utcnow().strftime("%Y%m%dT%H%M%S%f")
    path = outbox / f"{stamp}-{re.sub(r'[^a-zA-Z0-9.@_-]', '_', str(msg['To']))}.eml"
    path.write_bytes(bytes(msg))
    if settings.env == "development":
        # Handy on a laptop; anywhere else a log line is no place for a sign-in link.
        links = _LINK.findall(msg.get_content())
        log.info("email to %s written to %s; links: %s", msg["To"], path, " ".join(links))
    else:
        log.info("email to %s written to %s", msg["To"], path)


async def queue_email(session: AsyncSession, to: str, subject: str, body: str) -> None:
    """The body (which may hold a one-time link) is sealed in the job row."""
    await enqueue(
        session,
        "mail.send",
        {"to": to, "subject": subject, "body_sealed": seal(session, body)},
        max_attempts=8,
    )


@job("mail.send")
async def send_job(ctx: JobContext, payload: dict[str, Any]) -> None:
    settings = ctx.settings
    body = unseal(ctx, payload["body_sealed"])
    await deliver(settings, build_message(settings, payload["to"], payload["subject"], body))


def read_outbox(outbox: Path) -> list[EmailMessage]:
    """Messages in the outbox, oldest first (used by the CLI and tests)."""
    from email import message_from_bytes, policy

    out = []
    for path in sorted(outbox.glob("*.eml")):
        msg = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert isinstance(msg, EmailMessage)
        out.append(msg)
    return out
