"""Helpers for the MFA and account tests: sudo, independent TOTP codes (oathtool), codes from
the SMS and email outboxes, and a second-factor sign-in."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

from httpx import AsyncClient

from forkyard.identity.sms import read_sms_outbox
from forkyard.kit.clock import clock
from tests.helpers import ORIGIN, PASSWORD, outbox


def oathtool(secret: str, offset_s: int = 0) -> str:
    """A TOTP code from Debian's oathtool (RFC 6238), independent of pyotp."""
    at = f"@{int(clock.now().timestamp()) + offset_s}"  # the server's clock, frozen or moved
    out = subprocess.run(
        ["oathtool", "--totp", "-b", "-N", at, secret], check=True, capture_output=True, text=True
    )
    return out.stdout.strip()


async def sudo(client: AsyncClient, password: str = PASSWORD) -> None:
    r = await client.post("/v1/auth/sudo", json={"password": password})
    assert r.status_code == 200, r.text


def last_sms_code(settings: Any, to: str) -> str:
    for phone, body in reversed(read_sms_outbox(Path(settings.outbox_dir))):
        if phone == to:
            match = re.search(r"\b(\d{6})\b", body)
            if match:
                return match.group(1)
    raise AssertionError(f"no SMS code to {to}")


def last_email_code(settings: Any, to: str) -> str:
    for msg in reversed(outbox(settings)):
        if str(msg["To"]) == to:
            match = re.search(r"code is (\d{6})", msg.get_content())
            if match:
                return match.group(1)
    raise AssertionError(f"no emailed code to {to}")


async def enroll_totp(client: AsyncClient) -> str:
    r = await client.post("/v1/auth/mfa/totp/enroll/begin")
    assert r.status_code == 200, r.text
    secret = r.json()["secret"]
    r = await client.post("/v1/auth/mfa/totp/enroll/finish", json={"code": oathtool(secret)})
    assert r.status_code == 201, r.text
    return str(secret)


async def password_step(client: AsyncClient, email: str) -> dict[str, Any]:
    """POST /v1/auth/login for an account with MFA: a challenge, and no cookies."""
    r = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["mfa_required"] is True and body["challenge_token"], body
    assert body["user"] is None and "fy_access" not in r.cookies
    client.headers.setdefault("Origin", ORIGIN["Origin"])
    return dict(body)
