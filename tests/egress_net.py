"""A network namespace of the test's own, with servers on 198.18.0.0/15 (the benchmarking
range, which egress tests take out of the blocked ranges), and a probe to run inside instances.
Everything made here is removed afterwards."""

from __future__ import annotations

import random
import socket
import struct
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from forkyard.node.egress import DEFAULT_BLOCKED

BLOCKED = tuple(r for r in DEFAULT_BLOCKED if r != "198.18.0.0/15")
PORT = 8080

# Run inside an instance: one line per target, "open" or "closed <error>".
PROBE = """
import socket, sys
for t in sys.argv[1:]:
    h, p = t.rsplit(":", 1)
    try:
        socket.create_connection((h, int(p)), timeout=3).close()
        print("open")
    except OSError as e:
        print("closed", type(e).__name__)
"""


@dataclass
class NetFixture:
    host: str  # the host's end of the test veth: a host address, never reachable
    allowed: str  # both served by one HTTP server in the namespace
    other: str


def _sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


@pytest.fixture(name="bench_net")
def bench_net_fixture() -> Iterator[NetFixture]:
    tag = uuid.uuid4().hex[:6]
    ns, veth = f"fyt-{tag}", f"fyt{tag}"
    base = 198 << 24 | 18 << 16 | random.randrange(0, 1 << 17, 8)  # a /29 of 198.18.0.0/15
    a = [socket.inet_ntoa(struct.pack("!I", base + i)) for i in range(4)]
    server = None
    try:
        _sh("ip", "netns", "add", ns)
        _sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _sh("ip", "addr", "add", f"{a[1]}/29", "dev", veth)
        _sh("ip", "link", "set", veth, "up")
        for cmd in (
            f"ip addr add {a[2]}/29 dev eth0",
            f"ip addr add {a[3]}/29 dev eth0",
            "ip link set eth0 up",
            "ip link set lo up",
            f"ip route add default via {a[1]}",
        ):
            _sh("ip", "netns", "exec", ns, *cmd.split())
        server = subprocess.Popen(
            ["ip", "netns", "exec", ns, "python3", "-m", "http.server", str(PORT)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd="/usr/share/doc",
        )
        yield NetFixture(host=a[1], allowed=a[2], other=a[3])
    finally:
        if server is not None:
            server.kill()
            server.wait()
        subprocess.run(["ip", "link", "del", veth], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
