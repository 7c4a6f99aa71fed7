"""Speaking to the app inside an instance over an `InstanceTcp`: the caller's HTTP request as
HTTP/1.1 (its head written as bytes, the app's answer parsed by httptools), or its websocket
spoken again as a websocket client (websockets' sans-I/O protocol), with the headers the app
should see (ADR 0013)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httptools
from starlette.types import Message, Receive, Scope, Send
from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.http11 import Response as WsResponse
from websockets.uri import parse_uri

from forkyard.config import Settings
from forkyard.forwards import service
from forkyard.forwards.refusals import Refused, header, refuse
from forkyard.forwards.tunnel import InstanceTcp
from forkyard.kit.errors import ForkyardError

log = logging.getLogger("forkyard.forwards.proxy")

HOP_BY_HOP = {
    b"connection",
    b"keep-alive",
    b"proxy-authenticate",
    b"proxy-authorization",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
    b"host",
    b"content-length",
}
# The app's response headers the caller does not get: its length does go on (the API's server
# frames the body by it), the rest is about the app's connection to us; and its Date, since the
# API's server dates every answer itself (two would be one too many).
RESPONSE_DROPPED = frozenset((HOP_BY_HOP - {b"content-length"}) | {b"date"})
_OURS_FORWARDED = (b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port")
# Methods whose request has no body unless the caller gave a length (no chunked framing made up).
_BODILESS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})


def _app_headers(
    scope: Scope, settings: Settings, host: str
) -> tuple[list[tuple[bytes, bytes]], bytes | None]:
    """One pass over the caller's headers: those the app should see (without hop-by-hop
    headers and our credentials, with X-Forwarded-*), and the caller's Content-Length."""
    out: list[tuple[bytes, bytes]] = []
    prior_for = ""
    length: bytes | None = None
    for k, v in scope["headers"]:
        if k in HOP_BY_HOP or k.startswith(b"sec-websocket-"):
            if k == b"content-length" and length is None:
                length = v
            continue
        if k == b"authorization" and v[:10].lower() == b"bearer fy_":
            continue
        if k == b"x-forwarded-for":
            prior_for = v.decode("latin-1")
            continue
        if k in _OURS_FORWARDED:
            continue
        if k == b"cookie":
            kept = _strip_our_cookies(v.decode("latin-1"))
            if kept:
                out.append((k, kept.encode("latin-1")))
            continue
        out.append((k, v))
    client = scope.get("client") or ("", 0)
    scheme = "https" if settings.public_url.startswith("https://") else scope.get("scheme", "http")
    scheme = scheme.replace("ws", "http")
    port = host.rsplit(":", 1)[1] if ":" in host else ("443" if scheme == "https" else "80")
    chain = f"{prior_for}, {client[0]}" if prior_for and settings.trusted_proxies else client[0]
    out += [
        (b"x-forwarded-for", chain.encode()),
        (b"x-forwarded-proto", scheme.encode()),
        (b"x-forwarded-host", host.encode()),
        (b"x-forwarded-port", port.encode()),
    ]
    return out, length


def forwarded_headers(scope: Scope, settings: Settings, host: str) -> list[tuple[bytes, bytes]]:
    """The caller's headers as the app should see them: without hop-by-hop headers and our
    credentials, with X-Forwarded-*."""
    return _app_headers(scope, settings, host)[0]


def _strip_our_cookies(header: str) -> str:
    parts = [p.strip() for p in header.split(";")]
    return "; ".join(p for p in parts if p and not p.split("=", 1)[0].strip().startswith("fy_"))


def _target_path(scope: Scope) -> bytes:
    raw = scope.get("raw_path") or scope["path"].encode()
    query: bytes = scope.get("query_string", b"")
    if service.SHARE_PARAM.encode() in query:
        pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
        query = urlencode([(k, v) for k, v in pairs if k != service.SHARE_PARAM]).encode()
    return bytes(raw) + (b"?" + query if query else b"")


async def _ready(scope: Scope, receive: Receive, send: Send, tcp: InstanceTcp, port: int) -> bool:
    """Whether the node connected the port; if not, the caller has its refusal (502)."""
    try:
        await tcp.ready()
    except ForkyardError as exc:
        await refuse(scope, receive, send, Refused(502, exc.code, exc.message, {"port": port}))
        return False
    return True


def _request_head(
    scope: Scope, headers: list[tuple[bytes, bytes]], host: str, framing: bytes
) -> bytes:
    """The request line and headers as bytes. Every name and value came through the API's own
    HTTP parser (no CR or LF can be in them), the host matched a preview host, and the rest
    is ours, so there is nothing left for an HTTP library to check."""
    lines = [scope["method"].encode(), b" ", _target_path(scope), b" HTTP/1.1\r\nhost: "]
    lines += [host.encode(), b"\r\n"]
    for k, v in headers:
        lines += [k, b": ", v, b"\r\n"]
    lines += [framing, b"connection: close\r\n\r\n"]
    return b"".join(lines)


class _AppResponse:
    """The app's answer as httptools reports it (these are its callbacks): the status and
    headers once complete, then the body as it comes. 1xx answers before the real one are
    skipped; a HEAD's answer is complete with its headers."""

    def __init__(self, head_only: bool) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.head_only = head_only
        self.status = 0  # of the final answer, once its headers are complete
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.complete = False
        self.length: int | None = None  # the app's Content-Length
        self.chunked = False  # a Transfer-Encoding: only the parser knows where the body ends
        self._interim = False

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-length":
            self.length = int(value)  # the parser has checked it is digits, and only one
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            self.chunked = True
        if name not in RESPONSE_DROPPED:
            self.headers.append((name, value.rstrip(b" \t")))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:
            self._interim, self.headers, self.length, self.chunked = True, [], None, False
            return
        self.status = status
        self.complete = self.head_only

    def on_body(self, body: bytes) -> None:
        if not self.complete:
            self.body.append(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
        else:
            self.complete = True

    def take_body(self) -> bytes:
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        self.body.clear()
        return body


async def proxy_http(
    scope: Scope,
    receive: Receive,
    send: Send,
    tcp: InstanceTcp,
    settings: Settings,
    host: str,
    port: int,
) -> None:
    headers, length = _app_headers(scope, settings, host)
    chunked = length is None and scope["method"] not in _BODILESS
    if length is not None:
        framing = b"content-length: " + length + b"\r\n"
    else:
        framing = b"transfer-encoding: chunked\r\n" if chunked else b""
    await tcp.write(_request_head(scope, headers, host, framing))
    if not await _ready(scope, receive, send, tcp, port):
        return
    while length is not None or chunked:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body = message.get("body", b"")
        more = message.get("more_body", False)
        if chunked:
            out = b"%x\r\n%b\r\n" % (len(body), body) if body else b""
            await tcp.write(out if more else out + b"0\r\n\r\n")
        elif body:
            await tcp.write(body)
        if not more:
            break
    await _answer(scope, receive, send, tcp, port)


async def _answer(scope: Scope, receive: Receive, send: Send, tcp: InstanceTcp, port: int) -> None:
    """The app's answer to the caller: its head once parsed, then its body. A body delimited
    by a length or by the app closing goes on as each read returns it, past the parser (no
    copy, no callback per read); chunks go through the parser, which alone sees their end."""
    response = _AppResponse(scope["method"] == "HEAD")
    while not response.status:
        data = await tcp.read()
        if not data:
            message = "The app closed the connection without answering."
            refused = Refused(502, "port_unreachable", message, {"port": port})
            return await refuse(scope, receive, send, refused)
        try:
            response.parser.feed_data(data)
        except httptools.HttpParserError:
            if not response.status:
                message = "The app's answer is not HTTP/1.1."
                refused = Refused(502, "port_unreachable", message, {"port": port})
                return await refuse(scope, receive, send, refused)
            if not response.complete:
                raise
    start = {"type": "http.response.start", "status": response.status}
    await send({**start, "headers": response.headers})
    body = response.take_body()
    if response.complete:
        await send({"type": "http.response.body", "body": body})
        return
    if response.chunked:
        await _chunked_body(send, tcp, response, body)
        return
    # The rest of the body, as it comes: up to the length, or up to the app's close.
    left = None if response.length is None else response.length - len(body)
    while True:
        if body:
            await send({"type": "http.response.body", "body": body, "more_body": True})
        body = await tcp.read()
        if not body:
            if left:  # cut short: the caller must not take it for the whole
                raise ConnectionResetError("the app's answer ended before its length")
            break
        if left is not None:
            if len(body) >= left:
                body = body[:left] if len(body) > left else body
                break
            left -= len(body)
    await send({"type": "http.response.body", "body": body})


async def _chunked_body(send: Send, tcp: InstanceTcp, response: _AppResponse, body: bytes) -> None:
    while True:
        if body:
            await send({"type": "http.response.body", "body": body, "more_body": True})
        data = await tcp.read()
        if not data:  # cut short: the caller must not take it for the whole
            raise ConnectionResetError("the app's answer ended before its last chunk")
        try:
            response.parser.feed_data(data)
        except httptools.HttpParserError:
            if not response.complete:
                raise
        body = response.take_body()
        if response.complete:
            await send({"type": "http.response.body", "body": body})
            return


async def proxy_websocket(
    scope: Scope,
    receive: Receive,
    send: Send,
    tcp: InstanceTcp,
    settings: Settings,
    host: str,
    port: int,
) -> None:
    """The caller's websocket, spoken again to the app over the tunnel (websockets' sans-I/O
    client): the handshake first, then messages both ways."""
    first = await receive()
    assert first["type"] == "websocket.connect"
    origin = header(scope, b"origin") or None
    protocols = [
        p.strip() for p in header(scope, b"sec-websocket-protocol").split(",") if p.strip()
    ]
    path = _target_path(scope).decode("latin-1")
    ws = ClientProtocol(
        parse_uri(f"ws://{host}{path}"),
        origin=origin,  # type: ignore[arg-type]
        subprotocols=protocols or None,  # type: ignore[arg-type]
        max_size=16 * 1024 * 1024,
    )
    handshake = ws.connect()
    for k, v in forwarded_headers(scope, settings, host):
        name = k.decode("latin-1")
        if name.lower() not in ("origin",):
            handshake.headers[name] = v.decode("latin-1")
    ws.send_request(handshake)
    await tcp.write(b"".join(ws.data_to_send()))
    if not await _ready(scope, receive, send, tcp, port):
        return
    response: WsResponse | None = None
    pending: list[Any] = []
    while response is None:
        data = await tcp.read()
        if data:
            ws.receive_data(data)
        else:
            ws.receive_eof()
        for ev in ws.events_received():
            if isinstance(ev, WsResponse):
                response = ev
            else:
                pending.append(ev)
        if response is None and not data:
            await send({"type": "websocket.close", "code": 1011})
            return
    if response.status_code != 101 or ws.handshake_exc is not None:
        await send({"type": "websocket.http.response.start", "status": 502, "headers": []})
        await send(
            {"type": "websocket.http.response.body", "body": b"The app refused the websocket."}
        )
        return
    await send(
        {"type": "websocket.accept", "subprotocol": response.headers.get("Sec-WebSocket-Protocol")}
    )
    await _relay_websocket(receive, send, tcp, ws, pending)


# Close codes a peer may put in a close frame (1005/1006/1015 are only ever reported locally).
_UNSENDABLE_CLOSE = {1004, 1005, 1006, 1015}


def _close_code(code: int | None, default: int) -> int:
    if code is None or code in _UNSENDABLE_CLOSE or not (1000 <= code <= 4999):
        return default
    return code


async def _relay_websocket(
    receive: Receive, send: Send, tcp: InstanceTcp, ws: ClientProtocol, pending: list[Any]
) -> None:
    """Messages both ways until either side closes. The app's close code reaches the caller
    and the caller's reaches the app; an app that drops the connection without a close frame
    is reported as 1011, the nearest code ASGI can send (1006 is never put on the wire)."""

    async def from_caller() -> None:
        while True:
            message: Message = await receive()
            if message["type"] == "websocket.disconnect":
                ws.send_close(_close_code(message.get("code"), 1000))
                await tcp.write(b"".join(ws.data_to_send()))
                return
            if message.get("text") is not None:
                ws.send_text(message["text"].encode())
            elif message.get("bytes") is not None:
                ws.send_binary(message["bytes"])
            await tcp.write(b"".join(ws.data_to_send()))

    async def from_app() -> None:
        parts: list[bytes] = []
        opcode = Opcode.TEXT
        events = pending
        while True:
            for frame in events:
                if frame.opcode in (Opcode.TEXT, Opcode.BINARY):
                    opcode, parts = frame.opcode, [frame.data]
                elif frame.opcode is Opcode.CONT:
                    parts.append(frame.data)
                elif frame.opcode is Opcode.CLOSE:
                    await tcp.write(b"".join(ws.data_to_send()))  # the close answer
                    code = ws.close_rcvd.code if ws.close_rcvd else None
                    await send({"type": "websocket.close", "code": _close_code(code, 1000)})
                    return
                else:
                    continue  # pings are answered by the protocol (sent below)
                if frame.fin:
                    payload = b"".join(parts)
                    if opcode is Opcode.TEXT:
                        await send({"type": "websocket.send", "text": payload.decode()})
                    else:
                        await send({"type": "websocket.send", "bytes": payload})
            outgoing = ws.data_to_send()
            if outgoing:
                await tcp.write(b"".join(outgoing))
            data = await tcp.read()
            if not data:
                await send({"type": "websocket.close", "code": 1011})
                return
            ws.receive_data(data)
            events = ws.events_received()

    tasks = [asyncio.create_task(from_caller()), asyncio.create_task(from_app())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, Exception):
            log.warning("preview websocket relay ended by %r", result)
