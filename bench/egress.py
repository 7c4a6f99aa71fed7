"""Egress figures (ADR 0015; prints, asserts nothing): boot time with egress "none" against
"allowlist" (same run, alternated), live policy change, and TCP throughput from an instance to a
server in a network namespace of this bench's own (198.18.0.0/15), against the host's own
throughput to it. Every netns, veth and instance made here is removed.

Run as root: /work/main/.venv/bin/python bench/egress.py [--boots 20] [--mb 300]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from forkyard.node.drivers.base import SandboxSpec
from forkyard.node.drivers.sandbox import SandboxDriver
from forkyard.node.egress import DEFAULT_BLOCKED, NetworkPolicy
from forkyard.node.images import ensure_default_image

NS, VETH = f"fyb-{os.getpid()}", f"fyb{os.getpid()}"
HOST, SERVER = "198.18.250.1", "198.18.250.2"
BLOCKED = tuple(r for r in DEFAULT_BLOCKED if r != "198.18.0.0/15")
# A sink: reads everything sent to it.
SINK = (
    "import socket\ns = socket.create_server(('0.0.0.0', 9009))\nwhile True:\n"
    "    c, _ = s.accept()\n    while c.recv(1 << 20): pass\n    c.close()\n"
)
SEND = (
    "import socket, sys, time\nn = int(sys.argv[2]) << 20\nb = b'x' * (1 << 20)\n"
    "t = time.perf_counter()\nc = socket.create_connection((sys.argv[1], 9009))\n"
    "for _ in range(n >> 20): c.sendall(b)\nc.shutdown(socket.SHUT_WR); c.recv(1); c.close()\n"
    "print(round((n >> 20) / (time.perf_counter() - t), 1))\n"
)


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--boots", type=int, default=20)
    ap.add_argument("--mb", type=int, default=300)
    args = ap.parse_args()
    cache = Path(os.environ.get("FORKYARD_IMAGE_CACHE", "/var/cache/forkyard/images"))
    image = ensure_default_image(cache, cache_dir=cache)
    data = Path(tempfile.mkdtemp(prefix="forkyard-bench-egress-"))
    driver = SandboxDriver(data, cgroup_parent=f"forkyard-bench-eg-{os.getpid()}")
    sink = None
    try:
        sh("ip", "netns", "add", NS)
        sh("ip", "link", "add", VETH, "type", "veth", "peer", "name", "eth0", "netns", NS)
        sh("ip", "addr", "add", f"{HOST}/30", "dev", VETH)
        sh("ip", "link", "set", VETH, "up")
        for cmd in (
            f"ip addr add {SERVER}/30 dev eth0",
            "ip link set eth0 up",
            "ip link set lo up",
        ):
            sh("ip", "netns", "exec", NS, *cmd.split())
        sink = subprocess.Popen(["ip", "netns", "exec", NS, "python3", "-c", SINK])

        allow = NetworkPolicy("allowlist", (SERVER,), BLOCKED)
        none_spec = SandboxSpec("bench-eg-none", image, memory_mb=512, disk_mb=512)
        allow_spec = SandboxSpec("bench-eg-allow", image, memory_mb=512, disk_mb=512, network=allow)
        for spec in (none_spec, allow_spec):  # disks made once
            await driver.start(spec)
            await driver.stop(spec.instance_id)
        times: dict[str, list[float]] = {"none": [], "allowlist": []}
        for _ in range(args.boots):
            for name, spec in (("none", none_spec), ("allowlist", allow_spec)):
                t = time.perf_counter()
                await driver.start(spec)
                times[name].append((time.perf_counter() - t) * 1000)
                await driver.stop(spec.instance_id)
        for name, xs in times.items():
            print(
                f"start to ready, egress {name:9s} (x{args.boots}): p50 {statistics.median(xs):6.1f} ms"
            )

        await driver.start(allow_spec)
        iid = allow_spec.instance_id
        changes = []
        for i in range(10):
            t = time.perf_counter()
            p = NetworkPolicy("open", (), BLOCKED) if i % 2 else allow
            await driver.set_network(iid, p)
            changes.append((time.perf_counter() - t) * 1000)
        print(
            f"live policy change allowlist<->open (x10): p50 {statistics.median(changes):6.1f} ms"
        )
        t = time.perf_counter()
        await driver.set_network(iid, NetworkPolicy("none", (), BLOCKED))
        await driver.set_network(iid, allow)
        print(
            f"live none -> allowlist -> none... link removed+made: {(time.perf_counter() - t) * 1000:6.1f} ms"
        )

        for _ in range(50):
            r = await driver.exec(iid, ["python3", "-c", SEND, SERVER, "1"])
            if r.exit_code == 0:
                break
            await asyncio.sleep(0.1)
        r = await driver.exec(iid, ["python3", "-c", SEND, SERVER, str(args.mb)], timeout=300)
        inst = float(r.stdout)
        host = subprocess.run(
            ["python3", "-c", SEND, SERVER, str(args.mb)], capture_output=True, text=True
        )
        print(
            f"TCP upload {args.mb} MB: instance (veth + nft + NAT) {inst} MB/s; host direct {host.stdout.strip()} MB/s"
        )
    finally:
        for iid in driver.list_owned():
            await driver.destroy(iid)
        await driver.close()
        if sink is not None:
            sink.kill()
            sink.wait()
        subprocess.run(["ip", "link", "del", VETH], capture_output=True)
        subprocess.run(["ip", "netns", "del", NS], capture_output=True)
        for c in ("memory", "pids", "cpu", "cpuacct", "freezer"):
            p = Path("/sys/fs/cgroup") / c / driver.cgroup_parent
            if p.is_dir():
                p.rmdir()
        driver.release_store()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
