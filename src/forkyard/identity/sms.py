"""Text messages through one interface: Twilio's SDK when an account is configured, otherwise a
file per message in <data_dir>/outbox (sms-*.txt). Messages are queued as jobs inside the
caller's transaction, like email, so a rolled-back request never texts anyone."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from forkyard.config import Settings
from forkyard.jobs import enqueue, job
from forkyard.jobs.queue import JobContext, seal, unseal
from forkyard.kit.clock import utcnow

log = logging.getLogger("forkyard.sms")

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


def is_e164(phone: str) -> bool:
    return bool(E164.match(phone))


def mask_phone(phone: str | None) -> str | None:
    """What a login screen may show of a number: the last two digits."""
    if not phone:
        return None
    return f"{phone[:2]}{'•' * max(0, len(phone) - 4)}{phone[-2:]}"


def _send_with_twilio(settings: Settings, to: str, body: str) -> str:
    from twilio.rest import Client

    client = Client(settings.twilio_account_sid, settings.twilio_auth_token)
    if settings.twilio_api_base_url:
        client.api.base_url = settings.twilio_api_base_url.rstrip("/")
    message = client.messages.create(to=to, from_=settings.twilio_from_number, body=body)
    return str(message.sid)


async def deliver_sms(settings: Settings, to: str, body: str) -> str:
    """Send one message now; returns the provider's id (or the outbox file name)."""
    if settings.twilio_account_sid and settings.twilio_auth_token:
        # The SDK is synchronous (requests); keep the event loop free.
        return await asyncio.to_thread(_send_with_twilio, settings, to, body)
    outbox = settings.outbox_dir
    outbox.mkdir(parents=True, exist_ok=True)
    stamp = utcnow().strftime("%Y%m%dT%H%M%S%f")
    path = outbox / f"sms-{stamp}-{re.sub(r'[^0-9+]', '_', to)}.txt"
    path.write_text(f"To: {to}\n\n{body}\n", encoding="utf-8")
    log.info("sms to %s written to %s", to, path.name)
    return path.name


async def queue_sms(session: AsyncSession, to: str, body: str) -> None:
    """The body holds a code: sealed in the job row."""
    await enqueue(
        session, "sms.send", {"to": to, "body_sealed": seal(session, body)}, max_attempts=5
    )


@job("sms.send")
async def send_job(ctx: JobContext, payload: dict[str, Any]) -> None:
    await deliver_sms(ctx.settings, payload["to"], unseal(ctx, payload["body_sealed"]))


def read_sms_outbox(outbox: Path) -> list[tuple[str, str]]:
    """(to, body) of every message in the outbox, oldest first (tests, the CLI)."""
    out = []
    for path in sorted(outbox.glob("sms-*.txt")):
        head, _, body = path.read_text(encoding="utf-8").partition("\n\n")
        out.append((head.removeprefix("To: ").strip(), body.strip()))
    return out
