"""The preview proxy: requests to `{port}-{instance_id}.<preview domain>` go to that port inside
the instance (ADR 0013), before any of the API's own middleware sees them.

Any method, bodies streamed both ways (chunked when the length is unknown), server-sent events
and websockets. The app inside sees X-Forwarded-For/-Proto/-Host/-Port and none of the
caller's Forkyard credentials (a Bearer `fy_` key, our cookies, the share parameter). One
tunnel per request; the app's keep-alive is not used (`Connection: close`)."""

from __future__ import annotations

import asyncio
import json
import logging
from html import escape
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode

import h11
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.http11 import Response as WsResponse
from websockets.uri import parse_uri

from forkyard.compute.node_client import node_clients
from forkyard.config import Settings
from forkyard.db.tenancy import is_owned
from forkyard.forwards import service
from forkyard.forwards.service import PreviewServer, PreviewTarget
from forkyard.forwards.tunnel import InstanceTcp, connect_node_port
from forkyard.identity.cookies import ACCESS_COOKIE
from forkyard.kit.clock import utcnow
from forkyard.kit.errors import ForkyardError
from forkyard.kit.http import client_ip
from forkyard.kit.ids import new_id
from forkyard.kit.ratelimit import limiter

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
# Idle-timeout bookkeeping: one activity write per instance per this many seconds.
TOUCH_EVERY_S = 10.0


class Refused(Exception):
    def __init__(self, status: int, code: str, message: str, details: dict[str, Any]) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


class PreviewProxy:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._touched: dict[str, float] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        fastapi_app = scope.get("app")
        settings: Settings = fastapi_app.state.settings  # type: ignore[union-attr]
        host = _header(scope, b"host")
        where = service.parse_preview_host(settings, host) if host else None
        if where is None:
            return await self.app(scope, receive, send)
        instance_id, port = where
        # Only the caller's credentials are read from this view of the request, always as a
        # GET (a websocket's scope is its upgrade request): a preview host is another origin
        # and what it carries is the app's traffic, not a write to our API, so the API's CSRF
        # check and its read-only-key rule do not apply; the app guards its own forms (ADR 0013).
        request = Request({**scope, "type": "http", "method": "GET"})
        try:
            target = await self._admit(request, settings, instance_id, port)
        except Refused as refused:
            return await _refuse(scope, receive, send, refused)
        if scope["type"] == "http" and (share := _share_param(scope)) is not None:
            return await _redeem_share(scope, send, settings, target, share)
        await self._touch(request, instance_id)
        assert target.server is not None
        node = node_clients.for_server(target.server, settings.secret_key)
        try:
            tcp = await connect_node_port(node, instance_id, port)
        except ForkyardError as exc:
            return await _refuse(
                scope, receive, send, Refused(502, exc.code, exc.message, {"port": port})
            )
        async with tcp:
            if scope["type"] == "http":
                await _proxy_http(scope, receive, send, tcp, settings, host, port)
            else:
                await _proxy_websocket(scope, receive, send, tcp, settings, host, port)

    async def _admit(
        self, request: Request, settings: Settings, instance_id: str, port: int
    ) -> PreviewTarget:
        db = request.app.state.db
        row = await db.plain(service.PREVIEW_LOOKUP, {"p_instance_id": instance_id, "p_port": port})
        target = None
        if row is not None and row[2] == "http":
            server = PreviewServer(row[5], row[6], row[7]) if row[5] else None
            target = PreviewTarget(row[0], row[1], row[2], row[3], row[4], server)
        if target is None or target.visibility != "public":
            await _authorize(request, settings, target)
        assert target is not None
        if target.instance_status != "running" or target.server is None:
            raise Refused(
                502,
                "instance_not_running",
                f"Instance {instance_id} is {target.instance_status}; start it to reach port {port}.",
                {"status": target.instance_status, "instance_id": instance_id},
            )
        return target

    async def _touch(self, request: Request, instance_id: str) -> None:
        """Proxied traffic is activity for the idle timeout (throttled per instance)."""
        now = utcnow()
        last = self._touched.get(instance_id)
        if last is not None and now.timestamp() - last < TOUCH_EVERY_S:
            return
        self._touched[instance_id] = now.timestamp()
        if len(self._touched) > 100_000:
            self._touched.clear()
        await request.app.state.db.plain(
            service.PREVIEW_TOUCH, {"p_instance_id": instance_id, "p_now": now}
        )


async def _authorize(request: Request, settings: Settings, target: PreviewTarget | None) -> None:
    """A private forward admits members of its org (API key, session cookie) and holders of a
    share cookie or link signed for this very forward. Unknown forwards look the same as
    private ones to a stranger (401), and as absent to a member of another org (404)."""
    ip = client_ip(request, settings.trusted_proxies)
    presented = [
        request.cookies.get(service.SHARE_COOKIE),
        request.query_params.get(service.SHARE_PARAM),
    ]
    for token in presented:
        if token and target and service.share_token_forward(settings, token) == target.forward_id:
            return
    authorization = request.headers.get("authorization", "")
    has_key = authorization.lower().startswith("bearer fy_")
    if has_key or request.cookies.get(ACCESS_COOKIE):
        from forkyard.identity.deps import get_principal

        try:
            principal = await get_principal(request)
        except ForkyardError as exc:
            _count_refusal(ip, settings)
            raise Refused(401, exc.code, exc.message, {}) from exc
        if target is not None and is_owned(target, principal):
            return
        _count_refusal(ip, settings)
        raise Refused(404, "not_found", "No such preview.", {})
    _count_refusal(ip, settings)
    raise Refused(
        401,
        "unauthenticated",
        "This preview is private: pass an API key of its org, or open a share link.",
        {},
    )


def _count_refusal(ip: str, settings: Settings) -> None:
    """Strangers probing preview hosts are rate limited like any anonymous caller."""
    try:
        limiter.hit(f"preview:{ip}", settings.rate_limit_anonymous_per_min * 10)
    except ForkyardError as exc:
        raise Refused(429, exc.code, exc.message, {}) from exc


def _header(scope: Scope, name: bytes) -> str:
    for k, v in scope["headers"]:
        if k == name:
            return str(v.decode("latin-1"))
    return ""


def _share_param(scope: Scope) -> str | None:
    for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1")):
        if k == service.SHARE_PARAM:
            return v
    return None


async def _redeem_share(
    scope: Scope, send: Send, settings: Settings, target: PreviewTarget, token: str
) -> None:
    """A share link: set the cookie for this preview host alone and send the browser on to
    the same URL without the token."""
    query = [
        (k, v)
        for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1"))
        if k != service.SHARE_PARAM
    ]
    location = scope.get("raw_path", scope["path"].encode()).decode("latin-1").split("?")[0]
    if query:
        location += "?" + urlencode(query)
    cookie = SimpleCookie()
    cookie[service.SHARE_COOKIE] = token
    morsel = cookie[service.SHARE_COOKIE]
    morsel["path"] = "/"
    morsel["httponly"] = True
    morsel["samesite"] = "Lax"
    morsel["max-age"] = settings.preview_share_ttl_s
    if settings.public_url.startswith("https://"):
        morsel["secure"] = True
    headers = [
        (b"location", location.encode()),
        (b"set-cookie", morsel.OutputString().encode()),
        (b"content-length", b"0"),
        (b"cache-control", b"no-store"),
    ]
    await send({"type": "http.response.start", "status": 303, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


def _wants_json(scope: Scope) -> bool:
    accept = _header(scope, b"accept")
    return "text/html" not in accept or bool(_header(scope, b"authorization"))


async def _refuse(scope: Scope, receive: Receive, send: Send, refused: Refused) -> None:
    if scope["type"] == "websocket":
        await send(
            {
                "type": "websocket.http.response.start",
                "status": refused.status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        body = json.dumps({"error": {"code": refused.code, "message": refused.message}}).encode()
        await send({"type": "websocket.http.response.body", "body": body})
        return
    request_id = _header(scope, b"x-request-id")[:100] or new_id("req")
    headers = [(b"x-request-id", request_id.encode()), (b"cache-control", b"no-store")]
    if refused.status == 429:
        headers.append((b"retry-after", b"60"))
    if _wants_json(scope):
        body = json.dumps(
            {
                "error": {
                    "code": refused.code,
                    "message": refused.message,
                    "request_id": request_id,
                    "details": refused.details,
                }
            }
        ).encode()
        headers.append((b"content-type", b"application/json"))
    else:
        body = _PAGE.format(
            status=refused.status, code=escape(refused.code), message=escape(refused.message)
        ).encode()
        headers.append((b"content-type", b"text/html; charset=utf-8"))
    await send({"type": "http.response.start", "status": refused.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{status} {code}</title></head>
<body style="font-family:sans-serif;max-width:40em;margin:4em auto">
<h1>{status}: {code}</h1><p>{message}</p><p><small>Forkyard preview</small></p></body></html>
"""


def _forwarded_headers(scope: Scope, settings: Settings, host: str) -> list[tuple[bytes, bytes]]:
    """The caller's headers as the app should see them: without hop-by-hop headers and our
    credentials, with X-Forwarded-*."""
    out: list[tuple[bytes, bytes]] = []
    prior_for = ""
    for k, v in scope["headers"]:
        if k in HOP_BY_HOP or k.startswith(b"sec-websocket-"):
            continue
        if k == b"authorization" and v[:10].lower() == b"bearer fy_":
            continue
        if k == b"x-forwarded-for":
            prior_for = v.decode("latin-1")
            continue
        if k in (b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port"):
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
    return out


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


async def _proxy_http(
    scope: Scope,
    receive: Receive,
    send: Send,
    tcp: InstanceTcp,
    settings: Settings,
    host: str,
    port: int,
) -> None:
    conn = h11.Connection(h11.CLIENT)
    headers = [(b"host", host.encode()), *_forwarded_headers(scope, settings, host)]
    length = _header(scope, b"content-length")
    if length:
        headers.append((b"content-length", length.encode()))
    elif scope["method"] not in ("GET", "HEAD", "OPTIONS", "DELETE"):
        headers.append((b"transfer-encoding", b"chunked"))
    headers.append((b"connection", b"close"))
    request = h11.Request(method=scope["method"], target=_target_path(scope), headers=headers)
    await tcp.write(conn.send(request) or b"")
    expects_body = bool(length) or (b"transfer-encoding", b"chunked") in headers
    while expects_body:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body = message.get("body", b"")
        if body:
            await tcp.write(conn.send(h11.Data(data=body)) or b"")
        if not message.get("more_body", False):
            break
    await tcp.write(conn.send(h11.EndOfMessage()) or b"")

    started = False
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await tcp.read()
            conn.receive_data(data)
            if not data and not started and conn.their_state is h11.SEND_RESPONSE:
                await _refuse(
                    scope,
                    receive,
                    send,
                    Refused(
                        502,
                        "port_unreachable",
                        "The app closed the connection without answering.",
                        {"port": port},
                    ),
                )
                return
            continue
        if isinstance(event, h11.InformationalResponse):
            continue
        if isinstance(event, h11.Response):
            out = [
                (k, v) for k, v in event.headers if k not in HOP_BY_HOP or k == b"content-length"
            ]
            await send({"type": "http.response.start", "status": event.status_code, "headers": out})
            started = True
        elif isinstance(event, h11.Data):
            await send({"type": "http.response.body", "body": bytes(event.data), "more_body": True})
        elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
            await send({"type": "http.response.body", "body": b""})
            return


async def _proxy_websocket(
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
    origin = _header(scope, b"origin") or None
    protocols = [
        p.strip() for p in _header(scope, b"sec-websocket-protocol").split(",") if p.strip()
    ]
    path = _target_path(scope).decode("latin-1")
    ws = ClientProtocol(
        parse_uri(f"ws://{host}{path}"),
        origin=origin,  # type: ignore[arg-type]
        subprotocols=protocols or None,  # type: ignore[arg-type]
        max_size=16 * 1024 * 1024,
    )
    handshake = ws.connect()
    for k, v in _forwarded_headers(scope, settings, host):
        name = k.decode("latin-1")
        if name.lower() not in ("origin",):
            handshake.headers[name] = v.decode("latin-1")
    ws.send_request(handshake)
    await tcp.write(b"".join(ws.data_to_send()))
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
