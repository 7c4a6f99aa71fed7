"""Egress policies on real network namespaces (node/egress.py, ADR 0015).

Servers run in a network namespace of the test's own (`ip netns add` + a veth from the host)
on addresses of 198.18.0.0/15, which these tests take out of the blocked ranges; nothing else
is ever contacted. Every netns and veth made here is removed afterwards."""

from __future__ import annotations

import asyncio
import socket
import struct
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

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


class _Resolver(asyncio.DatagramProtocol):
    """An upstream resolver of the test's: answers every A query with `address`."""

    def __init__(self, address: str) -> None:
        self.address = address

    def connection_made(self, transport):  # type: ignore[no-untyped-def]
        self.t = transport

    def datagram_received(self, data, addr):  # type: ignore[no-untyped-def]
        answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton(self.address)
        header = data[:2] + struct.pack("!HHHHH", 0x8180, 1, 1, 0, 0)
        self.t.sendto(header + data[12:] + answer, addr)


NAME_PROBE = """
import socket, struct, sys
ns = open("/etc/resolv.conf").read().split()[1]
for name in sys.argv[1:]:
    body = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\\0"
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
    s.sendto(struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0) + body + b"\\0\\1\\0\\1", (ns, 53))
    r = s.recv(512)
    if r[3] & 15:
        print("refused"); continue
    ip = socket.inet_ntoa(r[-4:])
    try:
        socket.create_connection((ip, 8080), timeout=3).close(); print("open")
    except OSError as e:
        print("closed", type(e).__name__)
"""


async def test_node_restart_restores_the_dns_relay_and_rules(
    default_image, make_spec, bench_net, tmp_path
):
    """A node that dies with an allowlisted instance running comes back through its start-up
    reconcile (Node.reconcile_with, as `forkyard node` runs it) with the instance's policy in
    force: the allowlisted name resolves through the node's relay and connects; another name
    is refused and another address is closed."""
    from forkyard.node.drivers.sandbox import SandboxDriver
    from forkyard.node.runner import Node, NodeConfig

    net = bench_net
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _Resolver(net.allowed), local_addr=("127.0.0.1", 0)
    )
    upstream = [transport.get_extra_info("sockname")]
    cgroup = f"forkyard-test-restart-{uuid.uuid4().hex[:6]}"
    first = SandboxDriver(tmp_path / "node", cgroup_parent=cgroup)
    first.network.upstreams = upstream
    spec = make_spec(network=policy("allowlist", "app.example", net.allowed))
    iid = spec.instance_id
    second = None
    try:
        await first.start(spec)
        assert await settled_probe(first, iid) == ["open", "refused"]
        # The node process dies: its sockets (the DNS relay's) and tasks go with it; the
        # sandbox, its link and its rules are left as they were.
        for link in first.network._links.values():
            assert link.relay is not None
            link.relay.close()
        await first.close()

        second = SandboxDriver(tmp_path / "node", cgroup_parent=cgroup)
        second.network.upstreams = upstream
        node = Node(
            NodeConfig(control_plane="http://unused", token="t", data_dir=tmp_path, name="n")
        )
        node.driver = second
        await node.reconcile_with({iid: "running"})
        assert second.state(iid) == "running"
        assert await settled_probe(second, iid) == ["open", "refused"]
        assert await probe(second, iid, f"{net.other}:{PORT}") == ["closed"]
        assert second.network._refresher is not None  # the allowlist's names are refreshed
    finally:
        transport.close()
        d = second or first
        await d.destroy(iid)
        await d.close()
        d.release_store()
        for c in ("memory", "pids", "cpu", "cpuacct", "freezer"):
            p = Path("/sys/fs/cgroup") / c / cgroup
            if p.is_dir():
                p.rmdir()


async def settled_probe(driver, instance_id: str) -> list[str]:
    """The allowlisted and the other name, probed until the allowed one connects (at most five
    tries): on a loaded machine the first connection through a link just made can miss its
    3 s. The other name must be refused on every try."""
    for _ in range(5):
        got = await probe_names(driver, instance_id, "app.example", "exfil.example")
        assert got[1] == "refused", got
        if got[0] == "open":
            break
        await asyncio.sleep(1)
    return got


async def probe_names(driver, instance_id: str, *names: str) -> list[str]:
    r = await driver.exec(instance_id, ["python3", "-c", NAME_PROBE, *names], timeout=60)
    assert r.exit_code == 0, r.stderr
    return [line.split()[0] for line in r.stdout.decode().splitlines()]


async def test_ipv6_from_an_instance_is_refused_by_the_rules(driver, make_spec, host_listener_v6):
    """IPv6 is not given to instances (ADR 0015), but their link carries it: the kernel gives
    both ends an fe80:: address. The node's rules refuse all of it (neighbour discovery
    included, so not even the host end's link address is learnt): a host listener on `::` is
    closed to the instance, and opens once the instance's table is gone, so what closed it
    was the rules, not a missing address or route."""
    spec = make_spec(network=policy("open"))
    await driver.start(spec)
    iid = spec.instance_id
    try:
        slot = int((driver.instance_dir(iid) / "egress-slot").read_text())
        host_ll = None
        for _ in range(100):  # duplicate address detection keeps it tentative for a moment
            out = subprocess.run(
                ["ip", "-6", "-o", "addr", "show", "dev", f"fyeg{slot}", "scope", "link"],
                capture_output=True, text=True,
            ).stdout  # fmt: skip
            if out and "tentative" not in out:
                host_ll = out.split()[3].split("/")[0]
                break
            await asyncio.sleep(0.1)
        assert host_ll is not None, "the host end has no IPv6 link-local address"
        target = f"{host_ll}%eth0:{host_listener_v6}"
        for _ in range(100):  # the instance's end has one too, once its own detection is done
            r = await driver.exec(iid, "ip -6 -o addr show dev eth0 scope link")
            if b"fe80::" in r.stdout and b"tentative" not in r.stdout:
                break
            await asyncio.sleep(0.1)
        assert b"fe80::" in r.stdout and b"tentative" not in r.stdout, r.stdout
        assert await probe(driver, iid, target, target) == ["closed", "closed"]
        r = await driver.exec(iid, "ip -6 route show default")
        assert r.stdout.strip() == b""  # and there is nowhere else to send it

        subprocess.run(["nft", "delete", "table", "inet", f"forkyard_eg{slot}"], check=True)
        # Without the rules, neighbour discovery first has to learn the host end's address: a
        # few tries on a loaded machine, then it must connect.
        for _ in range(5):
            if (opened := await probe(driver, iid, target)) == ["open"]:
                break
            await asyncio.sleep(1)
        assert opened == ["open"]
    finally:
        await driver.destroy(iid)


@pytest.fixture
async def host_listener_v6() -> AsyncIterator[int]:
    """A TCP server of the host's on every IPv6 address."""
    server = await asyncio.start_server(lambda r, w: w.close(), "::", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
