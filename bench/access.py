"""Reaching an instance: figures (ADR 0013, ADR 0014; prints, asserts nothing). Each way in is a
subcommand; add yours beside the others.

`ssh`: the SSH gateway's `ssh host true` round trip. On a platform of the bench's own (run as
root; a fresh ed25519 key on the account, one instance):

    python bench/access.py ssh [--runs 30]

or against a running installation (`forkyard serve`), with a key on your account and an
instance:

    python bench/access.py ssh --instance inst_... --identity ~/.ssh/id_ed25519 [--port 2222]

Prints p50/p90/max of N sequential `ssh -p PORT inst@host true` runs (a new connection each:
key exchange, sign-in, a command through the node and the agent), and as a baseline in the
same run the same OpenSSH client's own cost without a server to speak to of ours: `ssh -V`
would say nothing, so the baseline is `ssh -G` (config parsing) plus the client's process
start. Aim: under 50 ms.

`preview`: preview URLs, on a platform of the bench's own (bench/harness.py; run as root):

    python bench/access.py preview [--requests 300] [--mb 200] [--profile]

A `python3 -m http.server` inside an instance, asked for a 2 KiB file
- directly: a socket this bench makes in the instance's network namespace, a new connection
  per request, as the app's own clients on loopback would;
- through the node on a new WebSocket each time (how every way in worked before the warm
  connections of ADR 0013: TCP connect, upgrade and the node's authentication per request);
- through the node: `connect_node_port`, a warm WebSocket to the node's port route, given
  back after use, as the preview proxy, the tunnel and the SSH gateway all use it;
- through the preview URL: HTTP to the API with the preview host name (keep-alive to the API,
  a new tunnel per request behind it).
p50/p90 of each in the same run, alternated; the preview's p50 as a ratio of the direct p50 and
the milliseconds it adds (aim: under 2 ms), beside the API's cheapest route (`GET /health/live`,
what any request to the API costs). Then direct against the preview URL with its forward cached
and with the cache emptied by an announcement before each request (the lookup it saves), and
one large download, direct and proxied, in MB/s. `--profile` also prints the API process's own
timings of each step of the preview proxy (bench/preview_profile/sitecustomize.py).

`forward`: `forkyard forward ID PORT` run as a process (each local connection one WebSocket
tunnel through the API), on a platform of the bench's own (run as root):

    python bench/access.py forward [--requests 200] [--mb 200]

A 2 KiB GET with a new connection each, direct, through the command's local port and through
the preview URL, alternated, with the milliseconds each adds; then one download each way.

`lsp`: a completion round trip through the language server WebSocket (ADR 0017), on a platform
of the bench's own (run as root):

    python bench/access.py lsp [--requests 100]

pylsp of the default image, one client: the time to the first answer of `initialize` (the
server's start inside the instance), the first completion (jedi's cold caches), then p50/p90 of
N sequential `textDocument/completion` requests for `os.pa|` (the API, the node, the agent's
stdin and stdout, pylsp and jedi, and back).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
from harness import Platform, first_instance, platform
from sqlalchemy import select

from forkyard.forwards.tunnel import connect_node_port
from forkyard.node import ports

SMALL_PORT = 8780
REQUEST = b"GET /small HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n"


async def sh(api: httpx.AsyncClient, iid: str, command: str) -> None:
    r = await api.post(f"/v1/instances/{iid}/exec", json={"command": command})
    r.raise_for_status()
    if r.json()["exit_code"] != 0:
        raise RuntimeError(r.text)


async def start_server(p: Platform, iid: str, mb: int) -> str:
    """http.server in /srv serving `small` (2 KiB) and `big` (`mb` MiB); the path of its
    network namespace, found from the host by its command line."""
    await sh(p.api, iid, f"mkdir -p /srv && head -c 2048 /dev/urandom > /srv/small && "
             f"head -c {mb}M /dev/zero > /srv/big")  # fmt: skip
    await sh(p.api, iid, f"cd /srv && setsid python3 -m http.server {SMALL_PORT} "
             "--bind 127.0.0.1 >/dev/null 2>&1 </dev/null &")  # fmt: skip
    for _ in range(200):
        found = subprocess.run(
            ["pgrep", "-f", f"http.server {SMALL_PORT}"], capture_output=True, text=True
        ).stdout.split()
        # Ours only: another bench on this machine may run the same server on the same port.
        found = [pid for pid in found if p.cgroup_parent in _cgroup_of(pid)]
        if found:
            netns = f"/proc/{found[0]}/ns/net"
            try:
                _, writer = await ports.connect(netns, SMALL_PORT)
                writer.close()
                return netns
            except ports.PortRefused:
                pass
        await asyncio.sleep(0.05)
    raise RuntimeError("the server inside did not start")


async def forwarded_server(p: Platform, mb: int) -> tuple[str, str, str]:
    """An instance running `start_server`'s http.server, and a forward of its port: the
    instance, its network namespace and the forward's preview host."""
    iid = await first_instance(p.api, memory_mb=256, disk_mb=mb + 512)
    netns = await start_server(p, iid, mb)
    r = await p.api.post(f"/v1/instances/{iid}/port-forwards", json={"port": SMALL_PORT})
    r.raise_for_status()
    return iid, netns, httpx.URL(r.json()["url"]).netloc.decode()


def _cgroup_of(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return ""


async def direct(netns: str, request: bytes = REQUEST) -> int:
    reader, writer = await ports.connect(netns, SMALL_PORT)
    writer.write(request)
    got = 0
    while data := await reader.read(1 << 20):
        got += len(data)
    writer.close()
    return got


async def node_of(p: Platform, iid: str) -> Any:
    """The instance's node client, looked up once (the preview proxy has it from its own
    forward lookup; the node hop is measured without a database read)."""
    from forkyard.compute.models import ComputeServer, Instance
    from forkyard.compute.node_client import node_clients

    global _node
    if _node is None:
        async with p.db.transaction() as session:
            server = (
                await session.execute(
                    select(ComputeServer).join(Instance, Instance.server_id == ComputeServer.id)
                    .where(Instance.id == iid)
                )
            ).scalar_one()  # fmt: skip
        _node = node_clients.for_server(server, p.settings.secret_key)
    return _node


async def via_node(p: Platform, iid: str) -> int:
    """`connect_node_port`, as the preview proxy, the tunnel and `ssh -L` use it: a warm
    WebSocket, given back after use."""
    async with await connect_node_port(await node_of(p, iid), iid, SMALL_PORT) as tcp:
        await tcp.write(REQUEST)
        got = 0
        while data := await tcp.read():
            got += len(data)
    return got


async def via_node_cold(p: Platform, iid: str) -> int:
    """As the node hop would be without warm connections: a new connection to the node's port
    relay (TCP connect and sign-in) per request, then the same target line."""
    from forkyard.forwards.tunnel import InstanceTcp, _relay_for
    from forkyard.node import contract as c

    end = await _relay_for(await node_of(p, iid)).open()
    await end.write(c.PortConnectIn(instance_id=iid, port=SMALL_PORT).model_dump_json().encode())
    await end.write(b"\n")
    async with InstanceTcp(end, iid, SMALL_PORT) as tcp:
        await tcp.ready()
        await tcp.write(REQUEST)
        got = 0
        while data := await tcp.read():
            got += len(data)
    return got


_node: Any = None


async def via_preview(client: httpx.AsyncClient) -> int:
    r = await client.get("/small")
    r.raise_for_status()
    return len(r.content)


async def raw_get(url: str, request: bytes) -> int:
    """The same client as `direct`: a new connection, one request, read to the end."""
    u = httpx.URL(url)
    reader, writer = await asyncio.open_connection(u.host, u.port)
    writer.write(request)
    got = 0
    while data := await reader.read(1 << 20):
        got += len(data)
    writer.close()
    return got


class KeptAlive:
    """The same raw client on one connection kept open, as browsers and HTTP clients reach
    a server: each answer read by its Content-Length."""

    def __init__(self, url: str, request: bytes) -> None:
        self.url = httpx.URL(url)
        self.request = request.replace(b"Connection: close\r\n", b"")
        self.stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def get(self) -> int:
        if self.stream is None:
            self.stream = await asyncio.open_connection(self.url.host, self.url.port)
        reader, writer = self.stream
        writer.write(self.request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await reader.readexactly(length)
        return len(head) + length


def raw_request(path: str, host: str, authorization: str) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {authorization}\r\n"
            "Connection: close\r\n\r\n").encode()  # fmt: skip


async def via_api(client: httpx.AsyncClient) -> int:
    r = await client.get("/health/live")
    r.raise_for_status()
    return len(r.content)


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


async def latency(p: Platform, iid: str, netns: str, preview: httpx.AsyncClient, n: int) -> None:
    # The same kind of client, to the API's cheapest route: what any request to it costs.
    bare = httpx.AsyncClient(base_url=p.url, headers=dict(p.api.headers))
    host, key = preview.headers["Host"], preview.headers["Authorization"]
    to_preview = raw_request("/small", host, key)
    to_api = raw_request("/health/live", httpx.URL(p.url).netloc.decode(), key)
    ways: dict[str, Any] = {
        "direct (socket in the instance's netns)": lambda: direct(netns),
        "preview URL, same client as direct": lambda: raw_get(p.url, to_preview),
        "preview URL, that client kept alive": KeptAlive(p.url, to_preview).get,
        "API alone, same client: GET /health/live": lambda: raw_get(p.url, to_api),
        "node, a new relay connection each": lambda: via_node_cold(p, iid),
        "node, a warm relay connection": lambda: via_node(p, iid),
        "preview URL (API proxy + node)": lambda: via_preview(preview),
        "API alone: GET /health/live (its HTTP hop)": lambda: via_api(bare),
    }
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(10):  # warm: caches, the node's client, keep-alive to the API
        for way in ways.values():
            await way()
    # A new order each round: a way run right after another that woke the same processes
    # would find them awake, and look faster than it is.
    order = list(ways.items())
    shuffle = random.Random(13).shuffle
    for _ in range(n):
        shuffle(order)
        for name, way in order:
            t = time.perf_counter()
            await way()
            times[name].append((time.perf_counter() - t) * 1000)
    print(f"\nGET of a 2 KiB file, {n} requests each, in a new random order each round (ms)")
    for name, values in times.items():
        print(f"  {name:42s} p50 {statistics.median(values):6.2f}  p90 {pct(values, 0.9):6.2f}")
    d = statistics.median(times["direct (socket in the instance's netns)"])
    node = statistics.median(times["node, a warm relay connection"])
    pv = statistics.median(times["preview URL (API proxy + node)"])
    alive = statistics.median(times["preview URL, that client kept alive"])
    print(f"  preview / direct p50, kept alive to the API: {alive / d:.2f}x  (+{alive - d:.2f} ms)")
    raw = statistics.median(times["preview URL, same client as direct"])
    print(f"  preview / direct p50, same client: {raw / d:.2f}x  (+{raw - d:.2f} ms per request)")
    print(f"  preview / direct p50, httpx to the preview: {pv / d:.2f}x  (+{pv - d:.2f} ms)")
    cold = statistics.median(times["node, a new relay connection each"])
    print(f"  node hop alone: +{node - d:.2f} ms; API proxy on top: +{pv - node:.2f} ms")
    print(f"  node hop on a new relay connection: +{cold - d:.2f} ms ({cold / d:.2f}x direct)")
    hop = statistics.median(times["API alone: GET /health/live (its HTTP hop)"])
    print(f"  preview URL - node hop - API's HTTP hop: {pv - node - hop:+.2f} ms")
    await bare.aclose()
    await forward_cache(p, iid, netns, preview, n)


PAUSE_S = 0.01


async def forward_cache(
    p: Platform, iid: str, netns: str, preview: httpx.AsyncClient, n: int
) -> None:
    """The API's forward cache (forwards/service.py `previews`) against the lookup it saves,
    same run: before each request a pause, and for one of the ways an announcement on the
    cache's channel during it (as a change to the forward would send), so that request looks
    its forward up in the database as every preview request did before the cache. The pause
    is there for both: a process woken after a gap is slower (ADR 0008), whatever it does."""

    async def announce() -> None:
        await p.db.plain(
            "SELECT pg_notify('forkyard_previews', %(p_instance_id)s)", {"p_instance_id": iid}
        )

    async def nothing() -> None:
        await p.db.plain("SELECT 1", {})

    ways = {
        "direct": (nothing, lambda: direct(netns)),
        "preview URL, forward cached": (nothing, lambda: via_preview(preview)),
        "preview URL, forward looked up (cache emptied)": (announce, lambda: via_preview(preview)),
    }
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(n):
        for name, (before, way) in ways.items():
            await before()
            await asyncio.sleep(PAUSE_S)
            t = time.perf_counter()
            await way()
            times[name].append((time.perf_counter() - t) * 1000)
    print(f"\nThe same, each after a {PAUSE_S * 1000:.0f} ms pause, {n} requests each (ms)")
    for name, values in times.items():
        print(f"  {name:48s} p50 {statistics.median(values):6.2f}  p90 {pct(values, 0.9):6.2f}")
    d = statistics.median(times["direct"])
    hit = statistics.median(times["preview URL, forward cached"])
    miss = statistics.median(times["preview URL, forward looked up (cache emptied)"])
    print(f"  cached: +{hit - d:.2f} ms over direct ({hit / d:.2f}x); looked up: "
          f"+{miss - d:.2f} ms ({miss / d:.2f}x); cached / looked up p50 {hit / miss:.2f}")  # fmt: skip


def print_profile(path: Path) -> None:
    """The API process's own timings of its preview steps (bench/preview_profile/)."""
    import json

    if not path.exists():
        print("\n(no profile written: fewer than 100 preview requests?)")
        return
    steps: dict[str, list[float]] = json.loads(path.read_text())
    print("\nInside the API process, per preview request (ms; every request of the run)")
    for name, values in steps.items():
        print(f"  {name:40s} p50 {statistics.median(values):6.3f}  p90 {pct(values, 0.9):6.3f}"
              f"  ({len(values)} calls)")  # fmt: skip


async def throughput(netns: str, preview: httpx.AsyncClient, mb: int) -> None:
    t = time.perf_counter()
    got = await direct(netns, b"GET /big HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")
    direct_mbs = got / (1 << 20) / (time.perf_counter() - t)
    t = time.perf_counter()
    got = 0
    async with preview.stream("GET", "/big") as r:
        async for chunk in r.aiter_raw():
            got += len(chunk)
    proxied_mbs = got / (1 << 20) / (time.perf_counter() - t)
    print(f"\nOne {mb} MiB download (MB/s)")
    print(f"  direct {direct_mbs:8.1f}")
    print(f"  preview URL {proxied_mbs:8.1f}  ({proxied_mbs / direct_mbs:.2f} of direct)")


async def preview(requests: int, mb: int, profile: bool) -> None:
    if profile:
        import os
        import tempfile

        profiled = Path(tempfile.mkdtemp(prefix="fy-preview-profile-")) / "steps.json"
        here = str(Path(__file__).parent / "preview_profile")
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [here, *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        os.environ["FY_PREVIEW_PROFILE"] = str(profiled)
    async with platform(ssh_port=0) as p:  # the gateway on any free port: 2222 may be taken
        iid, netns, host = await forwarded_server(p, mb)
        key = p.api.headers["Authorization"]
        async with httpx.AsyncClient(
            base_url=p.url, headers={"Host": host, "Authorization": key}, timeout=600
        ) as client:
            await latency(p, iid, netns, client, requests)
            await throughput(netns, client, mb)
        await p.api.delete(f"/v1/instances/{iid}")
    if profile:
        print_profile(profiled)
    print(f"\n(machine: {Path('/proc/loadavg').read_text().split()[0]} load average at the end)")


async def forward_cli(requests: int, mb: int) -> None:
    """`forkyard forward` (cli/forward.py) run as a process, beside direct and the preview URL
    with the same raw client (a new connection, one request, read to the end), alternated; then
    one download each way in MB/s."""
    import json
    import os
    import signal
    import sys
    import tempfile

    async with platform(ssh_port=0) as p:
        iid, netns, host = await forwarded_server(p, mb)
        key = p.api.headers["Authorization"]
        env = {**os.environ, "FORKYARD_API_KEY": key.split()[1], "FORKYARD_BASE_URL": p.url,
               "XDG_CONFIG_HOME": tempfile.mkdtemp(prefix="fy-forward-bench-")}  # fmt: skip
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "forkyard.cli", "forward", iid, str(SMALL_PORT), "-p", "0",
            "--json", env=env, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None
        local = "http://" + json.loads(await proc.stdout.readline())["local"]
        big = b"GET /big HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n"
        try:
            times = await alternated(
                {
                    "direct (in the instance's network namespace)": lambda: direct(netns),
                    "forkyard forward (a new local connection)": lambda: raw_get(local, REQUEST),
                    "preview URL": lambda: raw_get(p.url, raw_request("/small", host, key)),
                },
                requests,
            )
            print_ways(f"A 2 KiB GET, {requests} of each, alternated (ms)", times)
            med = {name: statistics.median(v) for name, v in times.items()}
            base = med.pop("direct (in the instance's network namespace)")
            for name, ms in med.items():
                print(f"  {name}: +{ms - base:.2f} ms over direct ({ms / base:.2f}x)")
            print(f"\nOne {mb} MiB download (MB/s)")
            for name, way in [
                ("direct", lambda: direct(netns, big)),
                ("forkyard forward", lambda: raw_get(local, big)),
                ("preview URL", lambda: raw_get(p.url, raw_request("/big", host, key))),
            ]:
                t = time.perf_counter()
                got = await way()
                print(f"  {name:18s} {got / (1 << 20) / (time.perf_counter() - t):8.1f}")
        finally:
            proc.send_signal(signal.SIGINT)
            await proc.wait()
        await p.api.delete(f"/v1/instances/{iid}")
    print(f"\n(machine: {Path('/proc/loadavg').read_text().split()[0]} load average at the end)")


LSP_SOURCE = "import os\nos.pa"


async def lsp_completion(requests: int) -> None:
    import json

    import websockets

    async with platform(ssh_port=0) as p:  # the gateway on any free port: 2222 may be taken
        iid = await first_instance(p.api, memory_mb=512)
        await p.api.post(
            f"/v1/instances/{iid}/files", json={"path": "/root/b/m.py", "content": LSP_SOURCE}
        )
        url = p.url.replace("http", "ws", 1) + f"/v1/instances/{iid}/lsp/python?root=/root/b"
        headers = {"Authorization": p.api.headers["Authorization"]}
        async with websockets.connect(url, additional_headers=headers) as ws:
            ids = iter(range(1, 1 << 30))

            async def call(method: str, params: Any) -> Any:
                n = next(ids)
                await ws.send(json.dumps({"jsonrpc": "2.0", "id": n, "method": method,
                                          "params": params}))  # fmt: skip
                while True:
                    message = json.loads(await ws.recv())
                    if message.get("id") == n and "method" not in message:
                        return message.get("result")

            t = time.perf_counter()
            await call("initialize", {"processId": None, "rootUri": "file:///root/b",
                                      "capabilities": {}})  # fmt: skip
            started = (time.perf_counter() - t) * 1000
            await ws.send(json.dumps({"jsonrpc": "2.0", "method": "initialized", "params": {}}))
            uri = "file:///root/b/m.py"
            doc = {"uri": uri, "languageId": "python", "version": 1, "text": LSP_SOURCE}
            await ws.send(json.dumps({"jsonrpc": "2.0", "method": "textDocument/didOpen",
                                      "params": {"textDocument": doc}}))  # fmt: skip
            at = {"textDocument": {"uri": uri}, "position": {"line": 1, "character": 5}}
            t = time.perf_counter()
            first = await call("textDocument/completion", at)
            cold = (time.perf_counter() - t) * 1000
            assert first and first["items"], first
            times = []
            for _ in range(requests):
                t = time.perf_counter()
                await call("textDocument/completion", at)
                times.append((time.perf_counter() - t) * 1000)
        await p.api.delete(f"/v1/instances/{iid}")
    times.sort()
    print(f"LSP (pylsp): initialize {started:.0f} ms, first completion {cold:.0f} ms")
    print(
        f"completion round trip: p50 {statistics.median(times):.1f} ms, "
        f"p90 {pct(times, 0.9):.1f} ms, max {times[-1]:.1f} ms ({len(times)} requests)"
    )
    print(f"(machine: {Path('/proc/loadavg').read_text().split()[0]} load average at the end)")


def ssh_true(
    host: str, port: int, instance: str, identity: str, runs: int, *options: str
) -> list[float]:
    argv = [
        "ssh", "-p", str(port), "-i", identity, "-o", "BatchMode=yes",
        "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=accept-new",
        *[a for o in options for a in ("-o", o)],
        f"{instance}@{host}", "true",
    ]  # fmt: skip
    subprocess.run(argv, check=True)  # warm: known_hosts, the node's session route
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True)
        times.append((time.perf_counter() - start) * 1000)
    return sorted(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="what", required=True)
    s = sub.add_parser("ssh")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=2222)
    s.add_argument("--instance")
    s.add_argument("--identity")
    s.add_argument("--runs", type=int, default=30)
    s.add_argument("--profile", action="store_true", help="time the gateway's phases inside it")
    pv = sub.add_parser("preview")
    pv.add_argument("--requests", type=int, default=300)
    pv.add_argument("--mb", type=int, default=200)
    pv.add_argument("--profile", action="store_true", help="time the API's steps inside it")
    lsp = sub.add_parser("lsp")
    lsp.add_argument("--requests", type=int, default=100)
    sftp = sub.add_parser("sftp")
    sftp.add_argument("--requests", type=int, default=100)
    sftp.add_argument("--profile", action="store_true", help="time the gateway's lookups")
    terminal = sub.add_parser("terminal")
    terminal.add_argument("--sessions", type=int, default=30)
    fwd = sub.add_parser("forward")
    fwd.add_argument("--requests", type=int, default=200)
    fwd.add_argument("--mb", type=int, default=200)
    args = parser.parse_args()
    if args.what == "forward":
        asyncio.run(forward_cli(args.requests, args.mb))
        return
    if args.what == "sftp":
        asyncio.run(sftp_ops(args.requests, args.profile))
        return
    if args.what == "terminal":
        asyncio.run(terminal_prompt(args.sessions))
        return
    if args.what == "lsp":
        asyncio.run(lsp_completion(args.requests))
        return
    if args.what == "preview":
        asyncio.run(preview(args.requests, args.mb, args.profile))
        return
    if args.instance is None:
        asyncio.run(ssh_on_own_platform(args.runs, args.profile))
        return
    if args.identity is None:
        parser.error("--identity goes with --instance")
    print_ssh(ssh_true(args.host, args.port, args.instance, args.identity, args.runs))


def print_ssh_profile(path: Path) -> None:
    """The API process's own timings of a connection's phases (bench/ssh_profile/)."""
    import json

    if not path.exists():
        print("\n(no profile written)")
        return
    steps: dict[str, list[float]] = json.loads(path.read_text())
    print("\nInside the gateway, per connection (ms; every connection of the run)")
    for name, values in steps.items():
        print(f"  {name:40s} p50 {statistics.median(values):6.2f}  p90 {pct(values, 0.9):6.2f}"
              f"  ({len(values)})")  # fmt: skip


def print_ssh(times: list[float]) -> None:
    print(
        f"ssh host true: p50 {statistics.median(times):.1f} ms, "
        f"p90 {pct(times, 0.9):.1f} ms, max {times[-1]:.1f} ms ({len(times)} runs)"
    )


async def ssh_on_own_platform(runs: int, profile: bool) -> None:
    import os
    import tempfile

    from harness import free_port

    profiled = Path(tempfile.mkdtemp(prefix="fy-ssh-profile-")) / "phases.json"
    if profile:
        here = str(Path(__file__).parent / "ssh_profile")
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [here, *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        os.environ["FY_SSH_PROFILE"] = str(profiled)
    ssh_port = free_port()
    # The gateway counts every connection of an address against its sign-in limit: the bench
    # makes more than the default 30 a minute from 127.0.0.1, and the last would be refused.
    async with platform(
        ssh_port=ssh_port, ssh_listen_host="127.0.0.1", ssh_auth_attempts_per_min=1_000_000
    ) as p:
        iid = await first_instance(p.api)
        work = Path(tempfile.mkdtemp(prefix="fy-ssh-bench-"))
        key = await _bench_key(p, work)
        known = work / "known_hosts"
        times = await asyncio.to_thread(
            ssh_true, "127.0.0.1", ssh_port, iid, str(key), runs, f"UserKnownHostsFile={known}"
        )
        # What the client and the gateway agreed on (the cheap ones: curve25519, ed25519).
        verbose = subprocess.run(
            ["ssh", "-v", "-p", str(ssh_port), "-i", str(key), "-o", "BatchMode=yes",
             "-o", f"UserKnownHostsFile={known}", f"{iid}@127.0.0.1", "true"],
            capture_output=True, text=True,
        )  # fmt: skip
        agreed = [
            line.split(": ", 1)[1]
            for line in verbose.stderr.splitlines()
            if "kex: algorithm" in line or "host key algorithm" in line or "cipher:" in line
        ]
        # Baseline: the same client binary started as often, doing its config work only.
        base = []
        for _ in range(runs):
            t = time.perf_counter()
            subprocess.run(["ssh", "-G", "-p", str(ssh_port), f"{iid}@127.0.0.1"],
                           check=True, capture_output=True)  # fmt: skip
            base.append((time.perf_counter() - t) * 1000)
        await p.api.delete(f"/v1/instances/{iid}")
    print_ssh(times)
    print("agreed:", "; ".join(agreed))
    b = statistics.median(sorted(base))
    print(f"baseline (ssh -G, the client's start alone): p50 {b:.1f} ms")
    print(f"ratio to ssh -G: {statistics.median(times) / b:.1f}x")
    if profile:
        print_ssh_profile(profiled)
    print(f"(machine: {Path('/proc/loadavg').read_text().split()[0]} load average at the end)")


async def _bench_key(p: Platform, work: Path) -> Path:
    """A fresh ed25519 key on the bench account (account keys are the signed-in user's
    business: an API key may not add one)."""
    from harness import PASSWORD

    key = work / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    async with httpx.AsyncClient(base_url=p.url, headers={"Origin": p.url}) as browser:
        r = await browser.post(
            "/v1/auth/login", json={"email": "bench@example.com", "password": PASSWORD}
        )
        r.raise_for_status()
        r = await browser.post(
            "/v1/account/ssh-keys",
            json={"name": "bench", "public_key": (work / "id.pub").read_text()},
        )
        r.raise_for_status()
    return key


async def alternated(ways: dict[str, Any], n: int, warm: int = 5) -> dict[str, list[float]]:
    """p50-ready timings (ms) of each way, run in turn `n` times after `warm` unmeasured turns,
    so that the machine's load falls on every way alike."""
    for _ in range(warm):
        for way in ways.values():
            await way()
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(n):
        for name, way in ways.items():
            t = time.perf_counter()
            await way()
            times[name].append((time.perf_counter() - t) * 1000)
    return times


def print_ways(title: str, times: dict[str, list[float]]) -> None:
    print(f"\n{title}")
    for name, values in times.items():
        print(f"  {name:56s} p50 {statistics.median(values):7.2f}  p90 {pct(values, 0.9):7.2f}")


SFTP_SMALL = bytes(range(256)) * 8  # 2 KiB
SFTP_LARGE = bytes(range(256)) * 4096 * 16  # 16 MiB: four of the gateway's write runs


async def sftp_ops(requests: int, profile: bool) -> None:
    """SFTP through the gateway (asyncssh's client, one SSH connection) beside the files API
    doing the same work, alternated in one run (ADR 0014). `--profile`: the gateway's lookups
    timed inside it (bench/ssh_profile/), the SFTP sessions' among them."""
    import base64
    import json
    import os
    import shlex
    import tempfile

    import asyncssh
    from harness import free_port

    profiled = Path(tempfile.mkdtemp(prefix="fy-sftp-profile-")) / "phases.json"
    if profile:
        here = str(Path(__file__).parent / "ssh_profile")
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [here, *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        os.environ["FY_SSH_PROFILE"] = str(profiled)
    ssh_port = free_port()
    async with platform(
        ssh_port=ssh_port, ssh_listen_host="127.0.0.1", ssh_auth_attempts_per_min=1_000_000
    ) as p:
        iid = await first_instance(p.api)
        key = await _bench_key(p, Path(tempfile.mkdtemp(prefix="fy-sftp-bench-")))
        await sh(p.api, iid, "mkdir -p /root/b")
        small = "/root/b/small"
        content = {"path": small, "content": base64.b64encode(SFTP_SMALL).decode(),
                   "encoding": "base64"}  # fmt: skip
        (await p.api.post(f"/v1/instances/{iid}/files", json=content)).raise_for_status()
        # The gateway's metadata helper runs python3 in the instance per call: the API's
        # nearest equal is an exec of the same kind of program.
        stat_py = f"import os, json; s = os.stat({small!r}); print(json.dumps(list(s)))"
        stat_cmd = {"command": f"python3 -c {shlex.quote(stat_py)}"}
        async with asyncssh.connect(
            "127.0.0.1", ssh_port, username=iid, client_keys=[str(key)], known_hosts=None,
            agent_path=None, password=None,
        ) as conn, conn.start_sftp_client() as sftp:  # fmt: skip

            async def sftp_put() -> None:
                async with sftp.open("/root/b/put", "wb") as f:
                    await f.write(SFTP_SMALL)

            async def sftp_get() -> None:
                async with sftp.open(small, "rb") as f:
                    assert await f.read(len(SFTP_SMALL)) == SFTP_SMALL

            async def sftp_stat() -> None:
                assert (await sftp.stat(small)).size == len(SFTP_SMALL)

            async def session_stat() -> None:
                # scp and sftp open an SFTP session per command: its first request is where
                # the session finds the instance's node.
                async with conn.start_sftp_client() as own:
                    assert (await own.stat(small)).size == len(SFTP_SMALL)

            async def session_put() -> None:
                async with conn.start_sftp_client() as own, own.open("/root/b/s", "wb") as f:
                    await f.write(SFTP_SMALL)

            async def api_put() -> None:
                body = {**content, "path": "/root/b/api"}
                (await p.api.post(f"/v1/instances/{iid}/files", json=body)).raise_for_status()

            async def sftp_put_large() -> None:
                async with sftp.open("/root/b/large", "wb") as f:
                    await f.write(SFTP_LARGE)

            large_body = {"path": "/root/b/api-large", "encoding": "base64",
                          "content": base64.b64encode(SFTP_LARGE).decode()}  # fmt: skip

            async def api_put_large() -> None:
                r = await p.api.post(f"/v1/instances/{iid}/files", json=large_body)
                r.raise_for_status()

            async def api_get() -> None:
                r = await p.api.get(f"/v1/instances/{iid}/files", params={"path": small})
                r.raise_for_status()
                assert r.content == SFTP_SMALL

            async def api_stat() -> None:
                r = await p.api.post(f"/v1/instances/{iid}/exec", json=stat_cmd)
                r.raise_for_status()
                assert json.loads(r.json()["stdout"])[6] == len(SFTP_SMALL)  # st_size

            async def api_live() -> None:
                (await p.api.get("/health/live")).raise_for_status()

            times = await alternated(
                {
                    "SFTP put 2 KiB (open, write, close)": sftp_put,
                    "  files API: POST /files, the same bytes": api_put,
                    "SFTP put 16 MiB": sftp_put_large,
                    "  files API: POST /files, the same bytes (base64)": api_put_large,
                    "SFTP get 2 KiB (open, read, close)": sftp_get,
                    "  files API: GET /files": api_get,
                    "SFTP stat": sftp_stat,
                    "  exec API: python3 -c os.stat (the same program)": api_stat,
                    "SFTP session opened, one stat, closed (as scp)": session_stat,
                    "SFTP session opened, one put, closed (as scp uploads)": session_put,
                    "API alone: GET /health/live": api_live,
                },
                requests,
            )
        await p.api.delete(f"/v1/instances/{iid}")
    print_ways(f"SFTP beside the API, {requests} of each, alternated (ms)", times)
    med = {name.strip(): statistics.median(v) for name, v in times.items()}
    for sftp_way, api_way in [
        ("SFTP put 2 KiB (open, write, close)", "files API: POST /files, the same bytes"),
        ("SFTP put 16 MiB", "files API: POST /files, the same bytes (base64)"),
        ("SFTP get 2 KiB (open, read, close)", "files API: GET /files"),
        ("SFTP stat", "exec API: python3 -c os.stat (the same program)"),
    ]:
        print(f"  {sftp_way} / {api_way}: {med[sftp_way] / med[api_way]:.2f}x")
    for session_way, way in [
        ("SFTP session opened, one stat, closed (as scp)", "SFTP stat"),
        ("SFTP session opened, one put, closed (as scp uploads)",
         "SFTP put 2 KiB (open, write, close)"),
    ]:  # fmt: skip
        print(f"  a session of its own: +{med[session_way] - med[way]:.2f} ms ({way})")
    mb = len(SFTP_LARGE) / 1e6
    print(f"  SFTP put 16 MiB: {mb / med['SFTP put 16 MiB'] * 1000:.0f} MB/s")
    if profile:
        print_ssh_profile(profiled)
    print(f"(machine: {Path('/proc/loadavg').read_text().split()[0]} load average at the end)")


async def terminal_prompt(sessions: int) -> None:
    """Time to the first byte of the shell's prompt on a web terminal (GET .../terminal), beside
    the node's session opened directly from here on a new WebSocket (how the terminal opened it
    before) and on a warm one (how `ssh` and now the terminal open it), alternated in one run."""
    import json

    import websockets

    from forkyard.node import contract as c

    async with platform(ssh_port=0) as p:  # the gateway on any free port: 2222 may be taken
        iid = await first_instance(p.api)
        node = await node_of(p, iid)
        headers = {"Authorization": p.api.headers["Authorization"]}
        url = p.url.replace("http", "ws", 1) + f"/v1/instances/{iid}/terminal?cols=80&rows=24"
        opening = c.SessionOpenIn(kind="pty", term="xterm-256color", rows=24, cols=80)

        async def first_output(ws: Any) -> None:
            async for message in ws:
                if isinstance(message, bytes):
                    return
            raise RuntimeError("the session ended before any output")

        async def ended(ws: Any, exit_message: str | bytes) -> None:
            # Off the clock: the shell leaves, so nothing is left running in the instance.
            await ws.send(exit_message)
            async for _ in ws:
                pass

        async def via_api() -> float:
            t = time.perf_counter()
            async with websockets.connect(url, additional_headers=headers) as ws:
                await first_output(ws)
                took = (time.perf_counter() - t) * 1000
                await ended(ws, json.dumps({"type": "input", "data": "exit\r"}))
            return took

        async def node_new() -> float:
            t = time.perf_counter()
            ws = await node.session_pool().open()  # a new WebSocket, not a warm one
            await ws.send(
                c.SessionConnectIn(instance_id=iid, **opening.model_dump(exclude_none=True))
                .model_dump_json(exclude_none=True)
            )  # fmt: skip
            await first_output(ws)
            took = (time.perf_counter() - t) * 1000
            await ended(ws, b"exit\r")
            return took

        async def node_warm() -> float:
            t = time.perf_counter()
            ws = await node.open_session(iid, opening)
            await first_output(ws)
            took = (time.perf_counter() - t) * 1000
            await ended(ws, b"exit\r")
            await asyncio.sleep(0.05)  # the replacement WebSocket is made off the clock
            return took

        ways = {
            "web terminal: GET /v1/instances/{id}/terminal": via_api,
            "  node session, a new WebSocket (the terminal before)": node_new,
            "  node session, a warm WebSocket (as ssh)": node_warm,
        }
        times: dict[str, list[float]] = {name: [] for name in ways}
        for turn in range(sessions + 3):
            for name, way in ways.items():
                took = await way()
                if turn >= 3:  # three turns to warm the caches and the pools
                    times[name].append(took)
                await asyncio.sleep(0.05)
        await p.api.delete(f"/v1/instances/{iid}")
    print_ways(f"Time to the shell's first output byte, {sessions} sessions each (ms)", times)
    med = {name.strip(): statistics.median(v) for name, v in times.items()}
    api = med["web terminal: GET /v1/instances/{id}/terminal"]
    new = med["node session, a new WebSocket (the terminal before)"]
    warm = med["node session, a warm WebSocket (as ssh)"]
    print(f"  terminal / node session, warm: {api / warm:.2f}x (+{api - warm:.2f} ms)")
    print(f"  node session, new / warm WebSocket: {new / warm:.2f}x (+{new - warm:.2f} ms)")
    print(f"(machine: {Path('/proc/loadavg').read_text().split()[0]} load average at the end)")


if __name__ == "__main__":
    main()
