"""Sending one signed request to an endpoint, safely: the URL is checked when an endpoint is
saved and its name resolved again for every attempt, each address must be public (unless
webhooks_allow_private), and the connection goes to the address that was checked (the Host
header and TLS SNI carry the name), so a name that changes its answer between the check and the
connect (DNS rebinding) cannot reach an internal address. No redirects; bodies read are capped."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from urllib.parse import urlsplit, urlunsplit

import httpx
from standardwebhooks import Webhook

from forkyard.config import Settings
from forkyard.webhooks.errors import WebhookUrlRefused

# What an endpoint's answer is read up to (the rest is dropped), and kept of it.
MAX_RESPONSE_READ = 64 * 1024
EXCERPT_BYTES = 1024
USER_AGENT = "Forkyard-Webhooks/1"
# Metadata services that are not covered by "not global" on every platform.
_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str  # path and query, as given


def address_allowed(ip: str, settings: Settings) -> bool:
    """A public unicast address (or anything when private delivery is allowed, for tests)."""
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if settings.webhooks_allow_private:
        return True
    return addr.is_global and not addr.is_multicast and addr not in _METADATA


def parse_url(url: str, settings: Settings) -> Target:
    """The URL's parts, or WebhookUrlRefused: https outside development (and tests), a host,
    no credentials in it."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise WebhookUrlRefused("The URL is not valid.", details={"url": url}) from exc
    allowed = ("https", "http") if settings.is_dev else ("https",)
    if parts.scheme not in allowed:
        raise WebhookUrlRefused("Webhook URLs must use https.", details={"url": url})
    if not parts.hostname:
        raise WebhookUrlRefused("The URL has no host.", details={"url": url})
    if parts.username or parts.password:
        raise WebhookUrlRefused(
            "Credentials in the URL are refused; verify the signature instead.",
            details={"url": url},
        )
    path = urlunsplit(("", "", parts.path or "/", parts.query, ""))
    default_port = 443 if parts.scheme == "https" else 80
    return Target(parts.scheme, parts.hostname, port or default_port, path)


async def resolve(target: Target, settings: Settings) -> str:
    """One address of the target's host that is allowed; WebhookUrlRefused when it does not
    resolve or when any of its addresses is internal (a name must not be half public)."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            target.host, target.port, type=socket.SOCK_STREAM
        )
    except OSError as exc:
        raise WebhookUrlRefused(
            f"{target.host} does not resolve.", details={"host": target.host}
        ) from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    refused = [a for a in addresses if not address_allowed(a, settings)]
    if refused or not addresses:
        raise WebhookUrlRefused(
            f"{target.host} resolves to an address webhooks may not reach.",
            details={"host": target.host, "addresses": refused},
        )
    return addresses[0]


async def check_url(url: str, settings: Settings) -> None:
    """Refuse a URL at create and update time (it is checked again at every connect)."""
    await resolve(parse_url(url, settings), settings)


def new_secret() -> str:
    import base64
    import secrets

    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def signature(secrets: list[str], msg_id: str, timestamp: datetime, body: str) -> str:
    """Standard Webhooks `webhook-signature`: one `v1,...` per live secret, space-separated,
    so a receiver holding either secret accepts it while a rotation settles."""
    return " ".join(Webhook(s).sign(msg_id, timestamp, body) for s in secrets)


@lru_cache(maxsize=1)
def _tls() -> ssl.SSLContext:
    # Made once: building a default context (loading the CA bundle) costs milliseconds.
    return ssl.create_default_context()


@dataclass
class Outcome:
    status_code: int | None
    duration_ms: int
    excerpt: str | None
    error: str | None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


async def send(url: str, secrets: list[str], msg_id: str, body: str, settings: Settings) -> Outcome:
    """POST `body` to `url`, signed; never raises for the endpoint's faults (they are the
    outcome). The connection is made to the resolved, checked address."""
    started = time.monotonic()

    def done(code: int | None, excerpt: str | None, error: str | None) -> Outcome:
        return Outcome(code, int((time.monotonic() - started) * 1000), excerpt, error)

    try:
        target = parse_url(url, settings)
        address = await resolve(target, settings)
    except WebhookUrlRefused as exc:
        return done(None, None, exc.message)
    # The wall clock, not kit.clock: receivers check it against theirs (5 minutes' tolerance).
    now = datetime.now(UTC)
    host_header = target.host if target.port in (80, 443) else f"{target.host}:{target.port}"
    literal = f"[{address}]" if ":" in address else address
    pinned = f"{target.scheme}://{literal}:{target.port}{target.path}"
    headers = {
        "Host": host_header,
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature(secrets, msg_id, now, body),
    }
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    timeout = settings.webhooks_timeout_s
    try:
        async with (
            asyncio.timeout(timeout),
            httpx.AsyncClient(
                verify=_tls(), follow_redirects=False, timeout=timeout, trust_env=False
            ) as client,
            client.stream(
                "POST", pinned, content=body.encode(), headers=headers, extensions=extensions
            ) as response,
        ):
            read = bytearray()
            async for chunk in response.aiter_raw():
                read += chunk
                if len(read) >= MAX_RESPONSE_READ:
                    break
            excerpt = bytes(read[:EXCERPT_BYTES]).decode("utf-8", "replace")
            error = None
            if response.is_redirect:
                error = "redirects are not followed"
            return done(response.status_code, excerpt, error)
    except TimeoutError:
        return done(None, None, f"no answer within {timeout:g} s")
    except httpx.HTTPError as exc:
        return done(None, None, f"{type(exc).__name__}: {exc}"[:300])
    except OSError as exc:
        return done(None, None, f"connection failed: {exc.strerror or exc}"[:300])
