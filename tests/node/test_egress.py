"""Egress policies on real network namespaces (node/egress.py, ADR 0015).

Servers run in a network namespace of the test's own (`ip netns add` + a veth from the host)
on addresses of 198.18.0.0/15, which these tests take out of the blocked ranges; nothing else
is ever contacted. Every netns and veth made here is removed afterwards."""

from __future__ import annotations

import asyncio
import socket
import struct
import subprocess
from collections.abc import AsyncIterator

import pytest

from forkyard.node.egress import NetworkPolicy, link_addresses
from tests.egress_net import BLOCKED, PORT, PROBE, bench_net_fixture  # noqa: F401 (a fixture)

pytestmark = pytest.mark.sandbox


@pytest.fixture
async def host_listener() -> AsyncIterator[int]:
    """A TCP server of the host's, on every address: an instance must reach none of them."""
    server = await asyncio.start_server(lambda r, w: w.close(), "0.0.0.0", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()


async def probe(driver, instance_id: str, *targets: str) -> list[str]:
    r = await driver.exec(instance_id, ["python3", "-c", PROBE, *targets], timeout=60)
    assert r.exit_code == 0, r.stderr
    return [line.split()[0] for line in r.stdout.decode().splitlines()]


async def wait_open(driver, instance_id: str, target: str) -> None:
    for _ in range(50):  # the server in the test namespace may still be starting
        if await probe(driver, instance_id, target) == ["open"]:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{target} never opened")


def policy(egress: str, *allow: str) -> NetworkPolicy:
    return NetworkPolicy(egress=egress, allow=allow, blocked=BLOCKED)  # type: ignore[arg-type]


async def test_allowlist_open_none_live_and_nothing_of_the_host(
    driver, make_spec, bench_net, host_listener
):
    net = bench_net
    a = make_spec(network=policy("allowlist", net.allowed, "localhost"))
    b = make_spec(network=policy("open"))
    await asyncio.gather(driver.start(a), driver.start(b))
    ida, idb = a.instance_id, b.instance_id
    slots: list[int] = []
    try:
        allowed, other = f"{net.allowed}:{PORT}", f"{net.other}:{PORT}"
        await wait_open(driver, ida, allowed)
        r = await driver.exec(
            ida,
            ["python3", "-c", "import urllib.request as u; print(u.urlopen("
             f"'http://{allowed}/', timeout=5).status)"],
        )  # fmt: skip
        assert r.stdout == b"200\n", r.stderr
        slots = [int((driver.instance_dir(i) / "egress-slot").read_text()) for i in (ida, idb)]
        gw_a = link_addresses(slots[0])[0]
        addr_b = link_addresses(int((driver.instance_dir(idb) / "egress-slot").read_text()))[1]
        host = [f"{h}:{host_listener}" for h in (net.host, gw_a, "127.0.0.1")]
        # Denied: an address outside the allowlist, every host address (the test veth's,
        # the instance's own gateway, loopback, though "localhost" is in the list), the
        # other instance's address.
        assert await probe(driver, ida, other, *host, f"{addr_b}:{PORT}") == ["closed"] * 5

        # b is "open": both servers, still nothing of the host nor of a.
        await wait_open(driver, idb, other)
        gw_b = link_addresses(int((driver.instance_dir(idb) / "egress-slot").read_text()))[0]
        addr_a = link_addresses(int((driver.instance_dir(ida) / "egress-slot").read_text()))[1]
        r = await driver.exec(
            ida, "setsid python3 -m http.server 9000 </dev/null >/dev/null 2>&1 & echo started"
        )
        assert r.stdout == b"started\n"
        await wait_open(driver, ida, "127.0.0.1:9000")
        host_b = [f"{h}:{host_listener}" for h in (net.host, gw_b, "127.0.0.1")]
        assert await probe(driver, idb, allowed, *host_b, f"{addr_a}:9000") == [
            "open",
            *["closed"] * 4,
        ]

        # Rules cannot be changed from inside: no CAP_NET_ADMIN.
        for cmd in (
            "ip route del default",
            "ip route add 10.0.0.0/8 via " + gw_a,
            "ip link set eth0 down",
            "ip addr add 100.80.0.100/31 dev eth0",
            "nft flush ruleset",
        ):
            r = await driver.exec(ida, cmd)
            assert r.exit_code != 0, cmd

        # Live: a opens up, then loses its network entirely.
        await driver.set_network(ida, policy("open"))
        assert await probe(driver, ida, other, allowed) == ["open", "open"]
        await driver.set_network(ida, policy("allowlist", net.other))
        assert await probe(driver, ida, other, allowed) == ["open", "closed"]
        await driver.set_network(ida, policy("none"))
        r = await driver.exec(ida, "ip -o link")
        assert [ln.split(":")[1].strip() for ln in r.stdout.decode().splitlines()] == ["lo"]
        assert await probe(driver, ida, other) == ["closed"]
        assert driver.load_spec(ida).network.egress == "none"  # kept for the next boot
    finally:
        await asyncio.gather(driver.destroy(ida), driver.destroy(idb))
    # Nothing left on the host: no veth, no table, no marker.
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    for slot in slots:
        assert f"fyeg{slot}:" not in links and f"forkyard_eg{slot}\n" not in tables + "\n"


DNS_PROBE = """
import socket, struct, sys
def q(name):
    body = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\\0"
    return struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0) + body + struct.pack("!HH", 1, 1)
ns = open("/etc/resolv.conf").read().split()[1]
for name in sys.argv[1:]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
    s.sendto(q(name), (ns, 53))
    r = s.recv(512)
    print(r[3] & 15, struct.unpack("!H", r[6:8])[0])
"""


class _FakeDns(asyncio.DatagramProtocol):
    """An upstream resolver of the test's: answers every A query with 198.18.0.9."""

    def connection_made(self, transport):  # type: ignore[no-untyped-def]
        self.t = transport

    def datagram_received(self, data, addr):  # type: ignore[no-untyped-def]
        qid = data[:2]
        question = data[12:]
        answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton("198.18.0.9")
        self.t.sendto(qid + struct.pack("!HHHHH", 0x8180, 1, 1, 0, 0) + question + answer, addr)


async def test_dns_relay_answers_only_the_allowlist(driver, make_spec):
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(_FakeDns, local_addr=("127.0.0.1", 0))
    saved = driver.network.upstreams
    driver.network.upstreams = [transport.get_extra_info("sockname")]
    spec = make_spec(network=policy("allowlist", "pypi.example", "198.18.0.9"))
    try:
        await driver.start(spec)
        r = await driver.exec(spec.instance_id, ["python3", "-c", DNS_PROBE, "pypi.example",
                                                 "exfil.example"])  # fmt: skip
        # rcode 0 with one answer for the allowlisted name; REFUSED (5) for any other.
        assert r.stdout.decode().split("\n")[:2] == ["0 1", "5 0"], r.stderr
    finally:
        driver.network.upstreams = saved
        transport.close()
        await driver.destroy(spec.instance_id)
