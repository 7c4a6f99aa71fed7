"""Egress: what an instance may reach on the network (docs/adr/0015-egress.md).

An instance boots with only its loopback (bwrap --unshare-net). Policy "none" adds nothing: no
device, no rule, no process. "allowlist" and "open" give it a veth pair: `eth0` inside, with a
/31 of LINK_NET chosen by its uid-range slot (host-wide unique while it runs), and `fyeg<slot>`
on the host, where the node filters and masquerades its traffic with an nftables table of its
own (`inet forkyard_eg<slot>`). Every rule lives in the host's network namespace: the instance
has no CAP_NET_ADMIN over anything, and frames it forges with CAP_NET_RAW (AF_PACKET) still
arrive on the host end and meet the same rules.

Whatever the policy says:
- nothing of the host answers it (the input hook drops everything from its device but DNS to
  the node's forwarder on the link's host address): not the node's API, not the control plane
  on this machine, on any of the host's addresses, loopback included;
- IPv4 only, from its own address (no spoofing), never to `blocked` (private, loopback,
  link-local and metadata, CGNAT, multicast... the control plane's list, setting
  FORKYARD_EGRESS_BLOCKED_RANGES) nor to ALWAYS_BLOCKED (other instances' links among them);
- nothing opens a connection towards it (the forward hook passes only replies inward).
"allowlist" further passes only the addresses of `allow` (IPs, CIDRs, and host names the node
resolves when the policy is applied and again every REFRESH_S). DNS inside goes to the node's
forwarder (the link's host address, port 53), which relays to the host's resolvers; under
"allowlist" it answers only the allowlisted names (REFUSED otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import socket
import struct
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from forkyard.node.errors import SandboxFailed

log = logging.getLogger(__name__)

Egress = Literal["none", "allowlist", "open"]
EGRESS_MODES: tuple[Egress, ...] = ("none", "allowlist", "open")

# One /31 per uid-range slot (isolation.MAX_SLOTS ~ 35,000 fit): host end even, instance odd.
LINK_NET = ipaddress.IPv4Network("100.80.0.0/15")
# Never reachable, whatever the control plane's list says: this host's links to its instances,
# "this network", loopback, link-local (cloud metadata at 169.254.169.254), multicast, reserved.
ALWAYS_BLOCKED = (
    str(LINK_NET),
    "0.0.0.0/8",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "224.0.0.0/4",
    "240.0.0.0/4",
)
# The control plane's default (config.py egress_blocked_ranges): every non-public IPv4 range.
DEFAULT_BLOCKED = (
    "10.0.0.0/8",
    "100.64.0.0/10",  # CGNAT
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",  # benchmarking
    "198.51.100.0/24",
    "203.0.113.0/24",
    *ALWAYS_BLOCKED,
)
REFRESH_S = 300.0  # host names of allowlists are resolved again this often
DNS_TIMEOUT_S = 3.0
MAX_ALLOW = 256
REJECT = "reject with icmpx type admin-prohibited"  # fails fast inside, unlike a drop
HOST_RE = re.compile(
    r"^(?=.{1,253}\.?$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.)*"
    r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.?$"
)


@dataclass(frozen=True)
class NetworkPolicy:
    egress: Egress = "none"
    allow: tuple[str, ...] = ()  # host names, IPv4 addresses, IPv4 CIDRs
    blocked: tuple[str, ...] = DEFAULT_BLOCKED

    def to_json(self) -> dict[str, Any]:
        return {"egress": self.egress, "allow": list(self.allow), "blocked": list(self.blocked)}

    @classmethod
    def from_json(cls, d: dict[str, Any] | None) -> NetworkPolicy:
        if not d:
            return cls()
        return cls(
            egress=d.get("egress", "none"),
            allow=tuple(d.get("allow") or ()),
            blocked=tuple(d.get("blocked") or DEFAULT_BLOCKED),
        )


def valid_ranges(ranges: list[str] | tuple[str, ...]) -> bool:
    """Whether every entry is an IPv4 address or CIDR (they are written into nft rules)."""
    try:
        return all(ipaddress.ip_network(r, strict=False).version == 4 for r in ranges)
    except ValueError:
        return False


def split_allow(allow: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(networks as CIDR strings, host names), dropping IPv6 entries (no IPv6 egress)."""
    nets: list[str] = []
    names: list[str] = []
    for entry in allow:
        try:
            net = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            if HOST_RE.match(entry):
                names.append(entry.lower().rstrip("."))
            continue
        if net.version == 4:
            nets.append(str(net))
    return nets, names


def link_addresses(slot: int) -> tuple[str, str]:
    """(host end, instance end) of the slot's /31."""
    if 2 * slot + 1 >= LINK_NET.num_addresses:
        raise SandboxFailed(f"no egress link address for slot {slot}")
    return str(LINK_NET[2 * slot]), str(LINK_NET[2 * slot + 1])


def names_for(slot: int) -> tuple[str, str]:
    """(host interface, nftables table) of the slot."""
    return f"fyeg{slot}", f"forkyard_eg{slot}"


def ruleset(slot: int, policy: NetworkPolicy, resolved: list[str]) -> str:
    """The slot's nftables table, replaced atomically (`nft -f`): creating it empty first makes
    the delete valid when it does not exist yet."""
    iface, table = names_for(slot)
    gw, addr = link_addresses(slot)
    blocked = sorted({*policy.blocked, *ALWAYS_BLOCKED})
    allow = sorted(set(resolved))
    allow_set = f"elements = {{ {', '.join(allow)} }}" if allow else ""
    allow_rule = f"ip daddr != @allow {REJECT}" if policy.egress == "allowlist" else ""
    return f"""
table inet {table} {{}}
delete table inet {table}
table inet {table} {{
  set blocked {{ type ipv4_addr; flags interval; auto-merge; elements = {{ {", ".join(blocked)} }} }}
  set allow {{ type ipv4_addr; flags interval; auto-merge; {allow_set} }}
  chain input {{
    type filter hook input priority filter - 10; policy accept;
    iifname "{iface}" ip saddr {addr} ip daddr {gw} udp dport 53 accept
    iifname "{iface}" {REJECT}
  }}
  chain forward {{
    type filter hook forward priority filter - 10; policy accept;
    iifname "{iface}" jump from_instance
    oifname "{iface}" ct state established,related accept
    oifname "{iface}" drop
  }}
  chain from_instance {{
    meta nfproto != ipv4 drop
    ip saddr != {addr} drop
    ip daddr @blocked {REJECT}
    {allow_rule}
    accept
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr {addr} oifname != "{iface}" masquerade
  }}
}}
"""


async def _run(*argv: str, stdin: str | None = None) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, err = await proc.communicate(stdin.encode() if stdin is not None else None)
    if proc.returncode != 0:
        raise SandboxFailed(f"{argv[0]} failed ({proc.returncode}): {err.decode()[-500:]}")


def resolv_upstreams(path: Path = Path("/etc/resolv.conf")) -> list[tuple[str, int]]:
    out = []
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                out.append((parts[1], 53))
    return out or [("127.0.0.1", 53)]


def _qname(packet: bytes) -> str | None:
    """The first question's name of a DNS query (no compression in questions)."""
    labels = []
    i = 12
    try:
        while (n := packet[i]) != 0:
            if n & 0xC0:
                return None
            labels.append(packet[i + 1 : i + 1 + n].decode("ascii").lower())
            i += 1 + n
    except (IndexError, UnicodeDecodeError):
        return None
    return ".".join(labels)


def _refused(query: bytes) -> bytes:
    """REFUSED for `query`, its question echoed."""
    (qid, flags, qd) = struct.unpack("!HHH", query[:6])
    flags = 0x8000 | (flags & 0x7900) | 0x0080 | 5  # QR, opcode+RD kept, RA, rcode REFUSED
    return struct.pack("!HHHHHH", qid, flags, qd, 0, 0, 0) + query[12:]


class _DnsRelay(asyncio.DatagramProtocol):
    """The node's DNS forwarder for one instance, on its link's host address, port 53."""

    def __init__(self, link: _Link, upstreams: list[tuple[str, int]]) -> None:
        self.link = link
        self.upstreams = upstreams
        self.transport: asyncio.DatagramTransport | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < 12 or len(self.tasks) > 64:
            return
        task = asyncio.create_task(self._answer(data, addr))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _answer(self, query: bytes, addr: tuple[str, int]) -> None:
        policy = self.link.policy
        name = _qname(query)
        if policy.egress == "allowlist" and (name is None or name not in self.link.names):
            reply: bytes | None = _refused(query)
        else:
            reply = await self._forward(query)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)

    async def _forward(self, query: bytes) -> bytes | None:
        loop = asyncio.get_running_loop()
        for upstream in self.upstreams:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.setblocking(False)
                try:
                    await loop.sock_sendto(s, query, upstream)
                    data, _ = await asyncio.wait_for(loop.sock_recvfrom(s, 65535), DNS_TIMEOUT_S)
                except (OSError, TimeoutError):
                    continue
                if data[:2] == query[:2]:
                    return data
        return None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        for t in self.tasks:
            t.cancel()


@dataclass
class _Link:
    slot: int
    policy: NetworkPolicy
    names: set[str] = field(default_factory=set)
    resolved: list[str] = field(default_factory=list)
    resolved_at: float = 0.0
    relay: _DnsRelay | None = None


class EgressManager:
    """The egress links of one node's running instances (keyed by instance id)."""

    def __init__(self, upstreams: list[tuple[str, int]] | None = None) -> None:
        self.upstreams = upstreams or resolv_upstreams()
        self._links: dict[str, _Link] = {}
        self._refresher: asyncio.Task[None] | None = None

    def policy(self, instance_id: str) -> NetworkPolicy | None:
        link = self._links.get(instance_id)
        return link.policy if link else None

    async def apply(self, instance_id: str, slot: int, netns: str, policy: NetworkPolicy) -> None:
        """Make the instance's egress `policy` true now: rules first (atomically replaced),
        then the link if it has none. "none" removes the link and the rules. On failure,
        nothing of this instance's egress is left (it has no network but loopback)."""
        if policy.egress == "none":
            await self.remove(instance_id, slot)
            return
        nets, names = split_allow(policy.allow)
        link = self._links.get(instance_id)
        fresh = link is None
        try:
            resolved = nets + await _resolve(names)
            await _run("nft", "-f", "-", stdin=ruleset(slot, policy, resolved))
            if link is None:
                link = _Link(slot, policy)
                await self._make_link(link, netns)
                self._links[instance_id] = link
            link.policy, link.names, link.resolved = policy, set(names), resolved
            link.resolved_at = time.monotonic()
        except BaseException:
            if fresh:
                await self.remove(instance_id, slot)
            raise
        if names and self._refresher is None:
            self._refresher = asyncio.create_task(self._refresh_loop())

    async def _make_link(self, link: _Link, netns: str) -> None:
        iface, _ = names_for(link.slot)
        gw, addr = link_addresses(link.slot)
        pid = netns.split("/")[2]
        forward = Path("/proc/sys/net/ipv4/ip_forward")
        if forward.read_text().strip() != "1":
            log.warning("enabling IPv4 forwarding on this host for instances' egress")
            forward.write_text("1\n")
        with contextlib.suppress(SandboxFailed):  # a leftover of a crashed node on this slot
            await _run("ip", "link", "del", iface)
        await _run(
            "ip",
            "-batch",
            "-",
            stdin=(
                f"link add {iface} type veth peer name eth0 netns {pid}\n"
                f"addr add {gw}/31 dev {iface}\n"
                f"link set {iface} up\n"
            ),
        )
        await _run(
            "nsenter",
            f"--net={netns}",
            "ip",
            "-batch",
            "-",
            stdin=(
                f"addr add {addr}/31 dev eth0\n"
                "link set eth0 up\n"
                f"route add default via {gw} dev eth0\n"
            ),
        )
        loop = asyncio.get_running_loop()
        relay = _DnsRelay(link, self.upstreams)
        await loop.create_datagram_endpoint(lambda: relay, local_addr=(gw, 53))
        link.relay = relay

    async def remove(self, instance_id: str, slot: int) -> None:
        """Drop the instance's link (if its sandbox still runs), rules and DNS relay."""
        link = self._links.pop(instance_id, None)
        if link is not None and link.relay is not None:
            link.relay.close()
        iface, table = names_for(slot)
        if Path(f"/sys/class/net/{iface}").exists():
            with contextlib.suppress(SandboxFailed):
                await _run("ip", "link", "del", iface)
        with contextlib.suppress(SandboxFailed):
            await _run("nft", "delete", "table", "inet", table)

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_S / 10)
            for instance_id, link in list(self._links.items()):
                _, names = split_allow(link.policy.allow)
                if not names or time.monotonic() - link.resolved_at < REFRESH_S:
                    continue
                try:
                    nets, _ = split_allow(link.policy.allow)
                    resolved = nets + await _resolve(names)
                    if sorted(resolved) != sorted(link.resolved):
                        rules = ruleset(link.slot, link.policy, resolved)
                        await _run("nft", "-f", "-", stdin=rules)
                    link.resolved, link.resolved_at = resolved, time.monotonic()
                except Exception:
                    log.exception("refreshing the allowlist of %s failed", instance_id)

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            self._refresher = None


async def _resolve(names: list[str]) -> list[str]:
    """IPv4 addresses of `names` (a name that does not resolve adds none: logged)."""
    loop = asyncio.get_running_loop()
    out: list[str] = []
    for name in names:
        try:
            infos = await loop.getaddrinfo(name, None, family=socket.AF_INET)
        except OSError as exc:
            log.warning("allowlist host %s does not resolve: %s", name, exc)
            continue
        out += sorted({str(info[4][0]) for info in infos})
    return out
