"""Port forwards and preview URLs, end to end: real servers inside an instance, reached by
curl, httpx and a websocket client through preview hosts, and the refusals around them."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
import uvloop
import websockets
from websockets.asyncio.client import connect

from forkyard.compute.node_client import NodeClient
from forkyard.db.changes import changes
from forkyard.db.engine import libpq_url
from forkyard.forwards.service import previews
from forkyard.forwards.tunnel import connect_node_port
from tests.compute.conftest import create_running, signed_in, wait_status
from tests.compute.port_forward_apps import HEADERS_APP, WS_ECHO
from tests.helpers import make_api_key

pytestmark = pytest.mark.sandbox


async def _start(api: httpx.AsyncClient, iid: str, script: str, name: str, port: int) -> None:
    r = await api.post(
        f"/v1/instances/{iid}/files", json={"path": f"/srv/{name}", "content": script}
    )
    assert r.status_code == 200, r.text
    r = await api.post(
        f"/v1/instances/{iid}/exec",
        json={"command": f"setsid python3 /srv/{name} {port} >/dev/null 2>&1 < /dev/null &"},
    )
    assert r.status_code == 200, r.text
    r = await api.post(
        f"/v1/instances/{iid}/exec",
        json={
            "command": f"for i in $(seq 100); do python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", {port}))' 2>/dev/null && exit 0; sleep 0.05; done; exit 1"
        },
    )
    assert r.json()["exit_code"] == 0, r.text


def _preview(platform: Any, url: str, **headers: str) -> httpx.AsyncClient:
    """A client that reaches a preview URL on loopback (glibc does not resolve *.localhost)."""
    host = urlsplit(url).netloc
    return httpx.AsyncClient(base_url=platform.url, headers={"Host": host, **headers}, timeout=30)


async def test_preview_urls_and_tunnel(platform: Any, compute_settings: Any, run_jobs: Any) -> None:
    api = platform.api
    key = api.headers["Authorization"].removeprefix("Bearer ")
    iid = (await create_running(api))["id"]
    await _start(api, iid, HEADERS_APP, "headers.py", 8001)
    await _start(api, iid, WS_ECHO, "echo.py", 8002)
    r = await api.post(f"/v1/instances/{iid}/exec", json={
        "command": "cd /srv && setsid python3 -m http.server 8000 --bind 127.0.0.1 >/dev/null 2>&1 </dev/null &"})  # fmt: skip
    assert r.status_code == 200

    forwards = f"/v1/instances/{iid}/port-forwards"
    made = {}
    for port in (8000, 8001, 8002):
        r = await api.post(forwards, json={"port": port})
        assert r.status_code == 201, r.text
        made[port] = r.json()
    pub = (await api.post(forwards, json={"port": 8003, "visibility": "public"})).json()
    assert made[8000]["url"] == f"http://8000-{iid}.localhost:{urlsplit(platform.url).port}/"
    assert made[8000]["id"].startswith("pf_") and made[8000]["visibility"] == "private"
    assert (await api.post(forwards, json={"port": 8000})).json()["error"][
        "code"
    ] == "port_forward_exists"
    assert (await api.post(forwards, json={"port": 0})).status_code == 422
    listed = (await api.get(forwards)).json()["data"]
    assert [f["port"] for f in listed] == [8000, 8001, 8002, 8003]

    before = (await api.get(f"/v1/instances/{iid}")).json()["last_activity_at"]

    # curl, as a user would, with *.localhost resolved by curl itself
    # (a subprocess of the event loop: the API under test serves on this same loop)
    curl = await asyncio.create_subprocess_exec(
        "curl", "-s", "-H", f"Authorization: Bearer {key}", made[8000]["url"],
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    listing = (await asyncio.wait_for(curl.communicate(), 30))[0].decode()
    assert "headers.py" in listing and "echo.py" in listing  # http.server's listing

    # httpx: what the app sees (X-Forwarded-*, none of our credentials), bodies both ways
    async with _preview(platform, made[8001]["url"], Authorization=f"Bearer {key}") as c:
        r = await c.get("/seen?a=1", headers={"Cookie": "fy_access=secret; theirs=1"})
        assert r.status_code == 200, r.text
        # One Date (the API's), and the app's own Server only.
        assert len(r.headers.get_list("date")) == 1
        assert [s.split("/")[0] for s in r.headers.get_list("server")] == ["BaseHTTP"], r.headers
        seen = r.json()
        headers = {k.lower(): v for k, v in seen["headers"].items()}
        assert seen["path"] == "/seen?a=1"
        assert "authorization" not in headers and headers["cookie"] == "theirs=1"
        assert headers["x-forwarded-host"] == urlsplit(made[8001]["url"]).netloc
        assert headers["x-forwarded-proto"] == "http" and headers["x-forwarded-for"] == "127.0.0.1"
        r = await c.put("/up", content=b"x" * 3_000_000)
        assert r.json() == {"method": "PUT", "length": 3_000_000}

        async def chunks():  # type: ignore[no-untyped-def]
            for _ in range(5):
                yield b"y" * 100_000

        r = await c.put("/up", content=chunks())
        assert r.json() == {"method": "PUT", "length": 500_000}
        async with c.stream("GET", "/events") as r:
            assert r.headers["content-type"] == "text/event-stream"
            body = b"".join([chunk async for chunk in r.aiter_raw()])
        assert body == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"

    # a signed-in browser on the app's page: its session cookie admits it, and a write from
    # the preview origin is the app's business (no API CSRF check); the app never sees the cookie
    access = platform.browser.cookies.get("fy_access")
    preview_origin = made[8001]["url"].rstrip("/")
    async with _preview(platform, made[8001]["url"], Origin=preview_origin) as c:
        r = await c.put("/form", content=b"a=1", headers={"Cookie": f"fy_access={access}"})
        assert r.status_code == 200 and r.json() == {"method": "PUT", "length": 3}, r.text
        r = await c.get("/page", headers={"Cookie": f"fy_access={access}; theirs=2"})
        assert r.json()["headers"]["cookie"] == "theirs=2"

    # a websocket echo server inside, through the preview host
    ws_url = made[8002]["url"].replace("http://", "ws://")
    async with connect(
        ws_url, host="127.0.0.1", port=urlsplit(platform.url).port,
        additional_headers={"Authorization": f"Bearer {key}"}, proxy=None,
    ) as ws:  # fmt: skip
        for message in ("hello", "x" * 70_000):
            await ws.send(message)
            assert await ws.recv() == message
        await ws.send(b"\x00\x01")
        assert await ws.recv() == b"\x00\x01"

    # refusals: no credentials, another org's key, a share link for another port
    async with _preview(platform, made[8001]["url"], Accept="application/json") as c:
        r = await c.get("/")
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated"
    other, other_browser, _ = await signed_in(
        platform.url, "other@example.com", compute_settings, run_jobs
    )
    other_key = other.headers["Authorization"]
    async with _preview(platform, made[8001]["url"], Authorization=other_key) as c:
        assert (await c.get("/")).status_code == 404
    assert (await other.get(forwards)).status_code == 404
    assert (await other.delete(f"{forwards}/{made[8001]['id']}")).status_code == 404
    await other.aclose()
    await other_browser.aclose()

    share = (await api.post(f"{forwards}/{made[8001]['id']}/share")).json()
    token = share["url"].split("forkyard_share=")[1]
    async with _preview(platform, made[8000]["url"]) as c:  # the link is for 8001, not 8000
        assert (await c.get("/", params={"forkyard_share": token})).status_code == 401
        assert (await c.get("/", cookies={"fy_preview": token})).status_code == 401
    async with _preview(platform, share["url"]) as c:
        r = await c.get(share["url"].split(urlsplit(share["url"]).netloc)[1])
        assert r.status_code == 303 and r.headers["location"] == "/"
        assert "fy_preview=" in r.headers["set-cookie"] and "Domain" not in r.headers["set-cookie"]
        r = await c.get("/shared", cookies={"fy_preview": token})
        assert r.status_code == 200 and r.json()["path"] == "/shared"
        assert "cookie" not in {k.lower() for k in r.json()["headers"]}

    # a public forward is open; nothing listens on 8003: a clear 502
    async with _preview(platform, pub["url"], Accept="text/html") as c:
        r = await c.get("/")
        assert r.status_code == 502 and "port_refused" in r.text

    # the TCP tunnel of a tcp forward: raw HTTP/1.0 over it
    tcp = await api.post(forwards, json={"port": 8001, "protocol": "tcp"})
    assert tcp.status_code == 409
    await api.delete(f"{forwards}/{made[8001]['id']}")
    tcp_fwd = (await api.post(forwards, json={"port": 8001, "protocol": "tcp"})).json()
    assert tcp_fwd["url"].endswith(f"/port-forwards/{tcp_fwd['id']}/connect")
    async with connect(
        tcp_fwd["url"], additional_headers={"Authorization": f"Bearer {key}"}, proxy=None
    ) as ws:
        await ws.send(b"GET /tunnel HTTP/1.0\r\n\r\n")
        await ws.send(b"")
        got = b""
        while (chunk := await ws.recv()) != b"":
            got += chunk  # type: ignore[operator]
    assert got.startswith(b"HTTP/1.1 200") and b'"/tunnel"' in got
    with pytest.raises(websockets.InvalidStatus):
        async with connect(tcp_fwd["url"], proxy=None):
            pass

    # a deleted forward: its URL is gone, even for members
    await api.delete(f"{forwards}/{made[8000]['id']}")
    async with _preview(platform, made[8000]["url"], Authorization=f"Bearer {key}") as c:
        assert (await c.get("/")).status_code == 404

    # preview traffic was activity (for the idle timeout)
    after = (await api.get(f"/v1/instances/{iid}")).json()["last_activity_at"]
    assert after > before, (before, after)

    # a stopped instance answers 502 naming its status
    assert (await api.delete(f"/v1/instances/{iid}/vm")).status_code == 202
    await wait_status(api, iid, "stopped")
    async with _preview(platform, made[8002]["url"], Authorization=f"Bearer {key}") as c:
        r = await c.get("/")
        assert r.status_code == 502
        assert r.json()["error"]["code"] == "instance_not_running"
        assert r.json()["error"]["details"]["status"] == "stopped"
    async with _preview(platform, made[8002]["url"], Accept="text/html") as c:  # a browser
        r = await c.get("/", headers={"Cookie": f"fy_access={access}"})
        assert r.status_code == 502 and r.headers["content-type"].startswith("text/html")
        assert "is stopped" in r.text

    # forwards go with their instance
    assert (await api.delete(f"/v1/instances/{iid}")).status_code == 202
    await wait_status(api, iid, "gone")
    async with _preview(platform, made[8002]["url"], Authorization=f"Bearer {key}") as c:
        assert (await c.get("/")).status_code == 404
    assert json.dumps(listed)


async def _tunnel_refusal(url: str, key: str = "", **headers: str) -> int | None:
    """The close code a tunnel gets before any byte of the port's."""
    if key:
        headers["Authorization"] = f"Bearer {key}"
    async with connect(url, additional_headers=headers, proxy=None) as ws:
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
    return ws.close_code


async def _handshake_refusal(url: str, key: str = "", **headers: str) -> int:
    """The HTTP status of a tunnel refused before its WebSocket opens (who is asking)."""
    if key:
        headers["Authorization"] = f"Bearer {key}"
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with connect(url, additional_headers=headers, proxy=None):
            pass
    return refused.value.response.status_code


async def test_a_tunnel_is_refused_to_whoever_may_not_use_it(
    platform: Any, compute_settings: Any, run_jobs: Any
) -> None:
    """The `connect` tunnel from where an attacker stands: another org's key on a real forward
    (the same 4404 as a forward that does not exist), a forward deleted a moment ago (cached
    while it was used), the instance's other forward id on the wrong instance, and a stopped
    instance (4409); a read-only key, and a member's session cookie sent from a page of
    another origin, a preview host among them (the handshake refused, 403). An open tunnel counts as activity for
    the idle timeout."""
    api = platform.api
    key = api.headers["Authorization"].removeprefix("Bearer ")
    iid = (await create_running(api))["id"]
    other_iid = (await create_running(api))["id"]
    await _start(api, iid, HEADERS_APP, "headers.py", 8002)
    forwards = f"/v1/instances/{iid}/port-forwards"
    fwd = (await api.post(forwards, json={"port": 8002, "protocol": "tcp"})).json()
    before = (await api.get(f"/v1/instances/{iid}")).json()["last_activity_at"]
    async with connect(
        fwd["url"], additional_headers={"Authorization": f"Bearer {key}"}, proxy=None
    ) as ws:  # it works for its own org (and is now in the API's cache)
        await ws.send(b"GET / HTTP/1.0\r\n\r\n")
        assert (await asyncio.wait_for(ws.recv(), 10)).startswith(b"HTTP/1")  # type: ignore[union-attr]
    after = (await api.get(f"/v1/instances/{iid}")).json()["last_activity_at"]
    assert after > before, (before, after)

    other, other_browser, _ = await signed_in(
        platform.url, "intruder@example.com", compute_settings, run_jobs
    )
    other_key = other.headers["Authorization"].removeprefix("Bearer ")
    assert await _tunnel_refusal(fwd["url"], other_key) == 4404
    missing = fwd["url"].replace(fwd["id"], "pf_00000000000000000000000000")
    assert await _tunnel_refusal(missing, other_key) == 4404
    elsewhere = fwd["url"].replace(iid, other_iid)
    assert await _tunnel_refusal(elsewhere, key) == 4404

    # Members, but not for a tunnel: a read-only key; the session cookie from a page of another
    # origin (a preview app on a sibling host of the API's, which a Lax cookie reaches).
    read_only = await make_api_key(platform.browser, scopes=["read"])
    assert await _handshake_refusal(fwd["url"], read_only) == 403
    cookie = f"fy_access={platform.browser.cookies.get('fy_access')}"
    sibling = f"http://8000-{other_iid}.localhost:{urlsplit(platform.url).port}"
    for origin in (sibling, "https://evil.example"):
        assert await _handshake_refusal(fwd["url"], Cookie=cookie, Origin=origin) == 403
    async with connect(
        fwd["url"], additional_headers={"Cookie": cookie, "Origin": platform.url}, proxy=None
    ) as ws:  # the console's own page
        await ws.send(b"GET / HTTP/1.0\r\n\r\n")
        assert (await asyncio.wait_for(ws.recv(), 10)).startswith(b"HTTP/1")  # type: ignore[union-attr]

    assert (await api.delete(f"{forwards}/{fwd['id']}")).status_code == 204
    assert await _tunnel_refusal(fwd["url"], key) == 4404
    fwd = (await api.post(forwards, json={"port": 8002, "protocol": "tcp"})).json()
    assert (await api.delete(f"/v1/instances/{iid}/vm")).status_code == 202
    await wait_status(api, iid, "stopped")
    assert await _tunnel_refusal(fwd["url"], key) == 4409
    await other.aclose()
    await other_browser.aclose()
    for instance in (iid, other_iid):
        await api.delete(f"/v1/instances/{instance}")


async def test_a_stalled_connection_holds_up_no_other(platform: Any) -> None:
    """Connections to the node are opened ahead of need and carry one connection at a time: a
    tunnel whose reader stops (a 64 MiB answer nobody reads) leaves preview requests to the
    same instance flowing, and still delivers every byte once read."""
    api = platform.api
    key = api.headers["Authorization"].removeprefix("Bearer ")
    iid = (await create_running(api, memory_mb=256, disk_mb=512))["id"]
    for port in (8000, 8001):
        r = await api.post(f"/v1/instances/{iid}/exec", json={"command": (
            "mkdir -p /srv && head -c 64M /dev/zero > /srv/big && echo hi > /srv/small && cd /srv"
            f" && setsid python3 -m http.server {port} --bind 127.0.0.1 >/dev/null 2>&1 </dev/null &"
        )})  # fmt: skip
        assert r.status_code == 200, r.text
    # Both servers listening before anything connects: the tunnel below has no retry.
    waited = await api.post(f"/v1/instances/{iid}/exec", json={"command": (
        "for i in $(seq 200); do python3 -c 'import socket as s; [s.create_connection("
        "(\"127.0.0.1\", p)).close() for p in (8000, 8001)]' 2>/dev/null && exit 0;"
        " sleep 0.1; done; exit 1"
    )})  # fmt: skip
    assert waited.json()["exit_code"] == 0, waited.text
    forwards = f"/v1/instances/{iid}/port-forwards"
    http_fwd = (await api.post(forwards, json={"port": 8000})).json()
    tcp_fwd = (await api.post(forwards, json={"port": 8001, "protocol": "tcp"})).json()
    auth = {"Authorization": f"Bearer {key}"}
    async with _preview(platform, http_fwd["url"], **auth) as c:
        for _ in range(100):  # the servers may still be starting
            r = await c.get("/small")
            if r.status_code == 200:
                break
            await asyncio.sleep(0.1)
        async with connect(
            tcp_fwd["url"], additional_headers=auth, proxy=None, max_size=None
        ) as stalled:
            await stalled.send(b"GET /big HTTP/1.0\r\n\r\n")
            await asyncio.sleep(1)  # buffers along the way fill up, then everything waits
            for _ in range(20):
                r = await asyncio.wait_for(c.get("/small"), 10)
                assert r.status_code == 200 and r.content == b"hi\n"
            got = 0
            while (chunk := await asyncio.wait_for(stalled.recv(), 30)) != b"":
                got += len(chunk)
    assert got > 64 * 2**20  # the headers and all of the file

    # Node WebSockets are used again once a connection ended: a download abandoned after its
    # first chunk leaves nothing behind for the requests that come after it.
    async with _preview(platform, http_fwd["url"], **auth) as c:
        for _ in range(3):
            async with c.stream("GET", "/big") as r:
                async for chunk in r.aiter_raw():
                    assert chunk.strip(b"\0") == b""
                    break
            for _ in range(5):
                r = await asyncio.wait_for(c.get("/small"), 10)
                assert r.status_code == 200 and r.content == b"hi\n"
    await api.delete(f"/v1/instances/{iid}")


async def test_the_node_port_relay_wants_the_node_secret(platform: Any) -> None:
    """Only the control plane opens connections through the node's port relay: without the
    node's secret the relay says nothing and connects nothing, even to a port that listens;
    with it, a target that is not an instance running there is answered with a refusal."""
    api = platform.api
    iid = (await create_running(api))["id"]
    serve = "import os, sys, http.server\nos.chdir('/srv')\nhttp.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), http.server.SimpleHTTPRequestHandler).serve_forever()\n"
    await _start(api, iid, serve, "serve.py", 8000)
    relay_port = (await _node_get(platform, "/node/ports"))["port"]
    assert relay_port == platform.node.relay_port
    target = json.dumps({"instance_id": iid, "port": 8000}).encode() + b"\n"
    request = b"GET / HTTP/1.0\r\n\r\n"

    async def through_relay(sign_in: bytes) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", relay_port)
        writer.write(sign_in + target + request)
        try:
            return await asyncio.wait_for(reader.read(), 10)
        finally:
            writer.close()

    secret = platform.node.secret.encode()
    for sign_in in (
        b"",
        b"FORKYARD-PORTS/1 not-the-secret\n",
        b"FORKYARD-PORTS/1 " + secret[:-1] + b"\n",
    ):
        assert await through_relay(sign_in) == b""
    answer, _, response = (await through_relay(b"FORKYARD-PORTS/1 " + secret + b"\n")).partition(
        b"\n"
    )
    assert json.loads(answer)["ok"] is True and response.startswith(b"HTTP/1.0 200"), response[:80]

    for bad in ('{"instance_id": "inst_nothere", "port": 80}', '{"port": 0}', "x"):
        reader, writer = await asyncio.open_connection("127.0.0.1", relay_port)
        writer.write(b"FORKYARD-PORTS/1 " + secret + b"\n" + bad.encode() + b"\n")
        got = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        answer = json.loads(got)
        assert answer["ok"] is False and answer["code"] in (
            "instance_not_found",
            "port_unreachable",
        ), answer

    # `forkyard serve` runs on uvloop, these tests on asyncio's loop: the control plane's end
    # of the relay also on uvloop (its transports are no asyncio.Transport), with a download
    # larger than what it reads ahead, so that its reads pause and resume.
    r = await api.post(
        f"/v1/instances/{iid}/exec", json={"command": "head -c 12M /dev/zero > /srv/big"}
    )
    assert r.json()["exit_code"] == 0, r.text

    def download_on_uvloop() -> bytes:
        async def download() -> bytes:
            node = NodeClient(platform.node.url, platform.node.secret)
            try:
                async with await connect_node_port(node, iid, 8000) as tcp:
                    await tcp.write(b"GET /big HTTP/1.0\r\n\r\n")
                    got = []
                    while data := await tcp.read():
                        got.append(data)
                        await asyncio.sleep(0.001)  # a slow reader
                return b"".join(got)
            finally:
                await node.close()

        return uvloop.run(download())

    got = await asyncio.to_thread(download_on_uvloop)
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200") and body == bytes(12 << 20), head
    await api.delete(f"/v1/instances/{iid}")


async def _node_get(platform: Any, path: str) -> Any:
    async with httpx.AsyncClient(
        base_url=platform.node.url, headers={"Authorization": f"Bearer {platform.node.secret}"}
    ) as node:
        r = await node.get(path)
        r.raise_for_status()
        return r.json()


async def test_a_change_reaches_a_warm_preview_cache_at_once(platform: Any, db: Any) -> None:
    """Where a preview request goes is cached per instance (forwards/service.py `previews`):
    a forward deleted through the API is refused on the very next request, and one made private
    by anyone else (here a psql-like connection of its own) within a second."""
    api = platform.api
    iid = (await create_running(api))["id"]
    r = await api.post(f"/v1/instances/{iid}/exec", json={"command": (
        "mkdir -p /srv && echo hi > /srv/small && cd /srv && setsid python3 -m http.server"
        " 8000 --bind 127.0.0.1 >/dev/null 2>&1 </dev/null &")})  # fmt: skip
    assert r.status_code == 200, r.text
    forwards = f"/v1/instances/{iid}/port-forwards"
    fwd = (await api.post(forwards, json={"port": 8000, "visibility": "public"})).json()
    for _ in range(500):
        if all(cache.listening for cache in changes.caches.values()):
            break
        await asyncio.sleep(0.01)
    async with _preview(platform, fwd["url"]) as anonymous:
        for _ in range(100):  # the server may still be starting
            if (await anonymous.get("/small")).status_code == 200:
                break
            await asyncio.sleep(0.1)
        assert (await anonymous.get("/small")).content == b"hi\n"
        assert (cached := previews.get(iid)) and cached[8000].visibility == "public"

        # Made private outside this process's sessions: only the announcement can tell it.
        async with await psycopg.AsyncConnection.connect(
            libpq_url(db.url), autocommit=True
        ) as conn:
            await conn.execute(
                "UPDATE port_forwards SET visibility = 'private' WHERE id = %s", (fwd["id"],)
            )
        started = asyncio.get_running_loop().time()
        while (r := await anonymous.get("/small")).status_code == 200:
            assert asyncio.get_running_loop().time() - started < 1.0, "still public"
            await asyncio.sleep(0.01)
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated"

    async with _preview(platform, fwd["url"], Authorization=api.headers["Authorization"]) as c:
        assert (await c.get("/small")).status_code == 200
        assert (await c.get("/small")).status_code == 200
        assert (cached := previews.get(iid)) and cached[8000].visibility == "private"
        assert (await api.delete(f"{forwards}/{fwd['id']}")).status_code == 204
        r = await c.get("/small")  # the very next request
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    await api.delete(f"/v1/instances/{iid}")


async def test_preview_passes_every_framing_of_http(platform: Any) -> None:
    """The proxy reads the app's answers itself (httptools) and writes the caller's requests
    as bytes: each way HTTP/1.1 delimits a body reaches the caller whole and in order (a
    length, chunks, the app closing), answers without a body end at their head (HEAD, 204,
    304), a 100 Continue is not taken for the answer, large bodies go both ways intact, and
    an app that cuts an answer short or does not speak HTTP is never passed off as whole."""
    api = platform.api
    key = api.headers["Authorization"].removeprefix("Bearer ")
    iid = (await create_running(api))["id"]
    await _start(api, iid, HEADERS_APP, "headers.py", 8001)
    made = (await api.post(f"/v1/instances/{iid}/port-forwards", json={"port": 8001})).json()
    async with _preview(platform, made["url"], Authorization=f"Bearer {key}") as c:
        r = await c.head("/seen")
        assert r.status_code == 200 and r.content == b""
        assert r.headers["content-length"] == "12345"
        for status in (204, 304):
            r = await asyncio.wait_for(c.get(f"/status/{status}"), 10)
            assert r.status_code == status and r.content == b"" and r.headers["etag"] == '"v1"'

        r = await c.get("/until-close")
        assert r.status_code == 200 and r.headers.get_list("set-cookie") == ["a=1", "b=2"]
        assert r.content == b"".join(bytes([i]) * 65536 for i in range(64))
        r = await c.get("/chunks")
        assert r.content == b"".join(bytes([i]) * (100_000 + i) for i in range(40))

        # uploads of 24 MiB, with a length and streamed in pieces (chunked to the app)
        upload = bytes(range(256)) * (24 * 4096)
        expected = hashlib.sha256(upload).hexdigest()
        r = await c.post("/digest", content=upload)
        assert r.json() == {"sha256": expected, "expect": None}

        async def pieces():  # type: ignore[no-untyped-def]
            for start in range(0, len(upload), 1_000_003):
                yield upload[start : start + 1_000_003]

        r = await c.post("/digest", content=pieces())
        assert r.json()["sha256"] == expected
        # the app answers `100 Continue` first (http.server does for Expect), then the answer
        r = await c.post("/digest", content=b"abc", headers={"Expect": "100-continue"})
        assert r.status_code == 200
        assert r.json() == {"sha256": hashlib.sha256(b"abc").hexdigest(), "expect": "100-continue"}

        r = await c.get("/not-http", headers={"Accept": "application/json"})
        assert r.status_code == 502 and r.json()["error"]["code"] == "port_unreachable"
        # a length promised and not kept: the caller's connection is cut, not the answer ended
        for cut in ("/cut-short", "/chunks-cut-short"):
            with pytest.raises(httpx.HTTPError):
                await c.get(cut)
        r = await c.get("/seen")  # and the preview goes on
        assert r.status_code == 200 and r.json()["path"] == "/seen"
    await api.delete(f"/v1/instances/{iid}")
