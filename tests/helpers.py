"""Small test helpers that act as a user would: sign up, read the outbox, sign in, make keys."""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from httpx import AsyncClient

from forkyard.mail.sender import read_outbox

PASSWORD = "correct horse battery staple 42"
ORIGIN = {"Origin": "http://testserver"}


def outbox(settings: Any) -> list[EmailMessage]:
    return read_outbox(Path(settings.outbox_dir))


def last_link(settings: Any, to: str, pattern: str = r"token=([A-Za-z0-9_\-]+)") -> str:
    for msg in reversed(outbox(settings)):
        if str(msg["To"]) == to:
            match = re.search(pattern, msg.get_content())
            if match:
                return match.group(1)
    raise AssertionError(f"no email with {pattern!r} to {to}")


@dataclass
class Account:
    email: str
    user_id: str
    org_id: str
    client: AsyncClient


async def signup(
    client: AsyncClient, email: str, password: str = PASSWORD, name: str = "Test"
) -> None:
    r = await client.post(
        "/v1/auth/signup", json={"email": email, "password": password, "name": name}
    )
    assert r.status_code == 201, r.text


async def login(client: AsyncClient, email: str, password: str = PASSWORD) -> dict[str, Any]:
    r = await client.post("/v1/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    client.headers.setdefault("Origin", ORIGIN["Origin"])
    return r.json()


async def make_account(
    client: AsyncClient,
    email: str,
    run_jobs: Any = None,
    settings: Any = None,
    verify: bool = False,
) -> Account:
    await signup(client, email)
    if verify:
        assert run_jobs is not None and settings is not None
        await run_jobs()
        token = last_link(settings, email)
        r = await client.get("/v1/auth/verify-email", params={"token": token})
        assert r.status_code == 200, r.text
    body = await login(client, email)
    return Account(email, body["user"]["id"], body["user"]["personal_org_id"], client)


async def make_api_key(
    client: AsyncClient, scopes: list[str] | None = None, name: str = "k"
) -> str:
    payload: dict[str, Any] = {"name": name}
    if scopes is not None:
        payload["scopes"] = scopes
    r = await client.post("/v1/api-keys", json=payload)
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


def error_code(response: Any) -> str:
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"code", "message", "request_id", "details"} <= set(body["error"]), body
    return str(body["error"]["code"])
