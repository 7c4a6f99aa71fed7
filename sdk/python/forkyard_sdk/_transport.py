"""HTTP for the SDK: one httpx client, the API key, retries (writes carry an Idempotency-Key so a
retried POST is answered once), error answers raised as their exception class, SSE parsing."""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from forkyard_sdk import errors
from forkyard_sdk._generated import OPERATIONS

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
RETRY_STATUSES = frozenset({429, 502, 503, 504})
USER_AGENT = "forkyard-sdk-python/0.1.0"


@dataclass(frozen=True)
class Event:
    """One server-sent event: `type` (start, stdout, stderr, exit, error...), its JSON `data`
    and `id` (a position to resume from)."""

    type: str
    data: Any
    id: str | None = None


@dataclass
class Config:
    api_key: str | None
    base_url: str
    timeout: float
    max_retries: int

    @classmethod
    def resolve(
        cls, api_key: str | None, base_url: str | None, timeout: float, max_retries: int
    ) -> Config:
        key = api_key or os.environ.get("FORKYARD_API_KEY")
        url = base_url or os.environ.get("FORKYARD_BASE_URL") or DEFAULT_BASE_URL
        return cls(key, url.rstrip("/"), timeout, max_retries)

    def headers(self) -> dict[str, str]:
        h = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self.api_key:
            h["Authorization"] = f"Bearer {self.api_key}"
        return h


def expand(path: str, path_params: dict[str, str]) -> str:
    for name, value in path_params.items():
        path = path.replace("{" + name + "}", quote(str(value), safe=""))
    return path


def clean_query(params: dict[str, Any] | None) -> dict[str, Any] | None:
    if not params:
        return None
    out = {}
    for k, v in params.items():
        if v is None:
            continue
        out[k] = ("true" if v else "false") if isinstance(v, bool) else v
    return out or None


def write_headers(method: str, idempotency_key: str | None) -> dict[str, str] | None:
    """An Idempotency-Key on every POST, exec included: retried without one, a command whose
    answer was lost would run twice; with it the server replays the first run (README)."""
    if method == "POST":
        return {"Idempotency-Key": idempotency_key or uuid.uuid4().hex}
    return None


def retryable(method: str, status: int | None, has_key: bool) -> bool:
    """GET, DELETE and keyed POSTs are safe to send again; a PATCH is not."""
    if method == "PATCH" or (method == "POST" and not has_key):
        return False
    return status is None or status in RETRY_STATUSES


def backoff(attempt: int, response: httpx.Response | None) -> float:
    if response is not None:
        after = response.headers.get("Retry-After")
        if after and after.replace(".", "", 1).isdigit():
            return min(float(after), 30.0)
    return float(min(0.25 * 2**attempt, 8.0) * (0.5 + random.random() / 2))


def decode(response: httpx.Response, kind: str) -> Any:
    if response.status_code >= 400:
        try:
            body = response.json()
        except ValueError:
            body = None
        raise errors.from_response(response.status_code, body, response.headers.get("X-Request-Id"))
    if kind == "bytes":
        return response.content
    if response.status_code == 204 or not response.content or kind == "none":
        return None
    return response.json()


class SseParser:
    """Feed lines of a `text/event-stream`; whole events come out."""

    def __init__(self) -> None:
        self.type = "message"
        self.data: list[str] = []
        self.id: str | None = None

    def feed(self, line: str) -> Event | None:
        if not line:
            if not self.data:
                self.type = "message"
                return None
            raw = "\n".join(self.data)
            try:
                data: Any = json.loads(raw)
            except ValueError:
                data = raw
            event = Event(self.type, data, self.id)
            self.type, self.data = "message", []
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self.type = value
        elif name == "data":
            self.data.append(value)
        elif name == "id":
            self.id = value
        return None


def stream_error(response: httpx.Response, body: bytes) -> errors.ForkyardError:
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    return errors.from_response(response.status_code, parsed, response.headers.get("X-Request-Id"))


class SyncCore:
    def __init__(self, config: Config, http: httpx.Client | None = None) -> None:
        self.config = config
        self.http = http or httpx.Client(
            base_url=config.base_url, headers=config.headers(), timeout=config.timeout
        )

    def close(self) -> None:
        self.http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        kind: str = "json",
        idempotency_key: str | None = None,
    ) -> Any:
        method = method.upper()
        headers = write_headers(method, idempotency_key)
        query = clean_query(params)
        attempt = 0
        while True:
            response: httpx.Response | None = None
            try:
                response = self.http.request(method, path, json=json, params=query, headers=headers)
            except httpx.TransportError as exc:
                if attempt >= self.config.max_retries or not retryable(method, None, bool(headers)):
                    raise errors.ConnectionError_(f"{type(exc).__name__}: {exc}") from exc
            else:
                if attempt >= self.config.max_retries or not retryable(
                    method, response.status_code, bool(headers)
                ):
                    return decode(response, kind)
            time.sleep(backoff(attempt, response))
            attempt += 1

    def op(
        self,
        operation_id: str,
        path_params: dict[str, str],
        query: dict[str, Any],
        body: Any,
        kind: str,
    ) -> Any:
        method, template = OPERATIONS[operation_id]
        return self.request(
            method, expand(template, path_params), json=body, params=query, kind=kind
        )

    def stream(
        self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None
    ) -> Iterator[Event]:
        headers = {"Accept": "text/event-stream"}
        with self.http.stream(
            method.upper(),
            path,
            json=json,
            params=clean_query(params),
            headers=headers,
            timeout=None,
        ) as response:
            if response.status_code >= 400:
                raise stream_error(response, response.read())
            parser = SseParser()
            for line in response.iter_lines():
                event = parser.feed(line)
                if event is not None:
                    yield event

    def stream_op(
        self,
        operation_id: str,
        path_params: dict[str, str],
        query: dict[str, Any],
        body: Any,
        kind: str,
    ) -> Iterator[Event]:
        method, template = OPERATIONS[operation_id]
        return self.stream(method, expand(template, path_params), json=body, params=query)


class AsyncCore:
    def __init__(self, config: Config, http: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self.http = http or httpx.AsyncClient(
            base_url=config.base_url, headers=config.headers(), timeout=config.timeout
        )

    async def close(self) -> None:
        await self.http.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        kind: str = "json",
        idempotency_key: str | None = None,
    ) -> Any:
        method = method.upper()
        headers = write_headers(method, idempotency_key)
        query = clean_query(params)
        attempt = 0
        while True:
            response: httpx.Response | None = None
            try:
                response = await self.http.request(
                    method, path, json=json, params=query, headers=headers
                )
            except httpx.TransportError as exc:
                if attempt >= self.config.max_retries or not retryable(method, None, bool(headers)):
                    raise errors.ConnectionError_(f"{type(exc).__name__}: {exc}") from exc
            else:
                if attempt >= self.config.max_retries or not retryable(
                    method, response.status_code, bool(headers)
                ):
                    return decode(response, kind)
            await asyncio.sleep(backoff(attempt, response))
            attempt += 1

    async def op(
        self,
        operation_id: str,
        path_params: dict[str, str],
        query: dict[str, Any],
        body: Any,
        kind: str,
    ) -> Any:
        method, template = OPERATIONS[operation_id]
        return await self.request(
            method, expand(template, path_params), json=body, params=query, kind=kind
        )

    async def stream(
        self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None
    ) -> AsyncIterator[Event]:
        headers = {"Accept": "text/event-stream"}
        async with self.http.stream(
            method.upper(),
            path,
            json=json,
            params=clean_query(params),
            headers=headers,
            timeout=None,
        ) as response:
            if response.status_code >= 400:
                raise stream_error(response, await response.aread())
            parser = SseParser()
            async for line in response.aiter_lines():
                event = parser.feed(line)
                if event is not None:
                    yield event

    def stream_op(
        self,
        operation_id: str,
        path_params: dict[str, str],
        query: dict[str, Any],
        body: Any,
        kind: str,
    ) -> AsyncIterator[Event]:
        method, template = OPERATIONS[operation_id]
        return self.stream(method, expand(template, path_params), json=body, params=query)
