"""The preview proxy: requests to `{port}-{instance_id}.<preview domain>` go to that port inside
the instance (ADR 0013), before any of the API's own middleware sees them.

Any method, bodies streamed both ways (chunked when the length is unknown), server-sent events
and websockets. The app inside sees X-Forwarded-For/-Proto/-Host/-Port and none of the
caller's Forkyard credentials (a Bearer `fy_` key, our cookies, the share parameter). One
tunnel per request, on a WebSocket to the node opened ahead of need (forwards/tunnel.py); the
app's keep-alive is not used (`Connection: close`). Speaking to the app is upstream.py; the
answers of a refusal are refusals.py."""

from __future__ import annotations

import logging
import time
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request, cookie_parser
from starlette.types import ASGIApp, Receive, Scope, Send

from forkyard.compute.node_client import node_clients
from forkyard.config import Settings
from forkyard.db.engine import Database
from forkyard.db.tenancy import is_owned
from forkyard.forwards import service
from forkyard.forwards.refusals import Refused, header, refuse
from forkyard.forwards.service import PreviewTarget
from forkyard.forwards.tunnel import connect_node_port
from forkyard.forwards.upstream import proxy_http, proxy_websocket
from forkyard.identity.cookies import ACCESS_COOKIE
from forkyard.kit.clock import utcnow
from forkyard.kit.errors import ForkyardError
from forkyard.kit.http import client_ip
from forkyard.kit.ratelimit import limiter

log = logging.getLogger("forkyard.forwards.proxy")

# Idle-timeout bookkeeping: one activity write per instance per this many seconds.
TOUCH_EVERY_S = 10.0


class PreviewProxy:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._touched: dict[str, float] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        # Every request to the API passes here: only its Host is read until it is a preview's.
        host = header(scope, b"host")
        if not host:
            return await self.app(scope, receive, send)
        state = scope["app"].state
        settings: Settings = state.settings
        where = service.parse_preview_host(settings, host)
        if where is None:
            return await self.app(scope, receive, send)
        instance_id, port = where
        try:
            target = await self._admit(scope, settings, instance_id, port)
        except Refused as refused:
            return await refuse(scope, receive, send, refused)
        if scope["type"] == "http" and (share := _share_param(scope)) is not None:
            return await _redeem_share(scope, send, settings, target, share)
        await self._touch(state.db, instance_id)
        assert target.server is not None
        node = node_clients.for_server(target.server, settings.secret_key)
        try:
            # Not waiting for the node's answer: the request's head goes with the target, and
            # a refusal surfaces at the tunnel's ready(), before anything is answered.
            tcp = await connect_node_port(node, instance_id, port, wait=False)
        except ForkyardError as exc:
            # Perhaps the instance moved or stopped and its announcement is still on its way.
            service.previews.forget(instance_id)
            return await refuse(
                scope, receive, send, Refused(502, exc.code, exc.message, {"port": port})
            )
        async with tcp:
            if scope["type"] == "http":
                await proxy_http(scope, receive, send, tcp, settings, host, port)
            else:
                await proxy_websocket(scope, receive, send, tcp, settings, host, port)

    async def _admit(
        self, scope: Scope, settings: Settings, instance_id: str, port: int
    ) -> PreviewTarget:
        target = await service.preview_target(scope["app"].state.db, instance_id, port)
        if target is not None and target.protocol != "http":
            target = None
        if target is None or target.visibility != "public":
            await _authorize(scope, settings, target)
        assert target is not None
        if target.instance_status != "running" or target.server is None:
            raise Refused(
                502,
                "instance_not_running",
                f"Instance {instance_id} is {target.instance_status}; start it to reach port {port}.",
                {"status": target.instance_status, "instance_id": instance_id},
            )
        return target

    async def _touch(self, db: Database, instance_id: str) -> None:
        """Proxied traffic is activity for the idle timeout (throttled per instance)."""
        now = time.monotonic()
        last = self._touched.get(instance_id)
        if last is not None and now - last < TOUCH_EVERY_S:
            return
        self._touched[instance_id] = now
        if len(self._touched) > 100_000:
            self._touched.clear()
        await db.plain(service.PREVIEW_TOUCH, {"p_instance_id": instance_id, "p_now": utcnow()})


def _as_get(scope: Scope) -> Request:
    """The request as the API's own authentication reads it, always as a GET (a websocket's
    scope is its upgrade request): a preview host is another origin and what it carries is
    the app's traffic, not a write to our API, so the API's CSRF check and its read-only-key
    rule do not apply; the app guards its own forms (ADR 0013). Made only when a credential
    of ours is to be checked or a refusal counted: a share link or a public forward needs none."""
    return Request({**scope, "type": "http", "method": "GET"})


async def _authorize(scope: Scope, settings: Settings, target: PreviewTarget | None) -> None:
    """A private forward admits members of its org (API key, session cookie) and holders of a
    share cookie or link signed for this very forward. Unknown forwards look the same as
    private ones to a stranger (401), and as absent to a member of another org (404)."""
    cookie = header(scope, b"cookie")
    cookies = cookie_parser(cookie) if cookie else {}
    for token in (cookies.get(service.SHARE_COOKIE), _share_param(scope)):
        if token and target and service.share_token_forward(settings, token) == target.forward_id:
            return
    authorization = header(scope, b"authorization")
    has_key = authorization[:10].lower() == "bearer fy_"
    if has_key or cookies.get(ACCESS_COOKIE):
        from forkyard.identity.deps import get_principal

        request = _as_get(scope)
        try:
            principal = await get_principal(request)
        except ForkyardError as exc:
            _count_refusal(request, settings)
            raise Refused(401, exc.code, exc.message, {}) from exc
        if target is not None and is_owned(target, principal):
            return
        _count_refusal(request, settings)
        raise Refused(404, "not_found", "No such preview.", {})
    _count_refusal(_as_get(scope), settings)
    raise Refused(
        401,
        "unauthenticated",
        "This preview is private: pass an API key of its org, or open a share link.",
        {},
    )


def _count_refusal(request: Request, settings: Settings) -> None:
    """Strangers probing preview hosts are rate limited like any anonymous caller."""
    ip = client_ip(request, settings.trusted_proxies)
    try:
        limiter.hit(f"preview:{ip}", settings.rate_limit_anonymous_per_min * 10)
    except ForkyardError as exc:
        raise Refused(429, exc.code, exc.message, {}) from exc


def _share_param(scope: Scope) -> str | None:
    query: bytes = scope.get("query_string", b"")
    if service.SHARE_PARAM.encode() not in query:
        return None
    for k, v in parse_qsl(query.decode("latin-1")):
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
