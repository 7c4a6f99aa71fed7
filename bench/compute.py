"""The platform's compute figures, end to end (prints; asserts nothing).

A whole platform in one run: embedded PostgreSQL (or FORKYARD_TEST_DATABASE_URL), the API with
its worker over real HTTP, and a `forkyard node` subprocess. Printed beside a raw `bwrap ... true`
and a driver-level agent round trip measured in the same run.

Run as root: /work/main/.venv/bin/python bench/compute.py [--boots 20] [--idle 100]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import time
from pathlib import Path

from harness import (
    CACHE,
    CONTROLLERS,
    Platform,
    create_running,
    delete_all,
    first_instance,
    load,
    platform,
)

from forkyard.node.drivers.base import SandboxSpec
from forkyard.node.drivers.sandbox import SandboxDriver
from forkyard.node.images import ensure_default_image


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def bwrap_true(image: Path, n: int = 20) -> list[float]:
    argv = ["bwrap", "--ro-bind", str(image), "/", "--proc", "/proc", "--dev", "/dev",
            "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "true"]  # fmt: skip
    out = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(argv, check=True)
        out.append((time.perf_counter() - t) * 1000)
    return out


async def raw_agent_rtt(image: Path, work: Path) -> list[float]:
    """`exec true` through the driver, no HTTP and no database: the floor for the API figure."""
    driver = SandboxDriver(work / "raw", cgroup_parent=f"forkyard-benchraw-{os.getpid()}")
    spec = SandboxSpec("bench-raw", image, memory_mb=256, disk_mb=256)
    try:
        await driver.start(spec)
        for _ in range(20):
            await driver.exec(spec.instance_id, ["true"])
        rtts = []
        for _ in range(200):
            t = time.perf_counter()
            await driver.exec(spec.instance_id, ["true"])
            rtts.append((time.perf_counter() - t) * 1000)
        return rtts
    finally:
        await driver.destroy(spec.instance_id)
        await driver.close()
        driver.release_store()
        for c in CONTROLLERS:
            p = Path("/sys/fs/cgroup") / c / driver.cgroup_parent
            if p.is_dir():
                p.rmdir()


def memory_of(cgroup_parent: str, iid: str) -> tuple[int, int]:
    """(cgroup usage incl. page cache, RSS) in bytes."""
    base = Path("/sys/fs/cgroup/memory") / cgroup_parent / iid
    usage = int((base / "memory.usage_in_bytes").read_text())
    stat = dict(line.split() for line in (base / "memory.stat").read_text().splitlines())
    return usage, int(stat.get("total_rss", stat.get("rss", 0)))


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--boots", type=int, default=20)
    ap.add_argument("--idle", type=int, default=100)
    args = ap.parse_args()
    image = ensure_default_image(CACHE, cache_dir=CACHE)
    async with platform() as p:
        await run(p, image, args.boots, args.idle)


async def run(p: Platform, image: Path, boots_n: int, idle_n: int) -> None:
    api, cg = p.api, p.cgroup_parent
    print(load())
    base = bwrap_true(image)
    print(f"raw `bwrap ... true`:              p50 {statistics.median(base):7.1f} ms")

    warm = await first_instance(api)

    boots = []
    ids = []
    for _ in range(boots_n):
        iid, ms = await create_running(api)
        boots.append(ms)
        ids.append(iid)
    print(
        f"create-to-running via API, polling (x{boots_n}): p50 {statistics.median(boots):7.1f} ms"
        f"   p95 {pct(boots, 0.95):7.1f} ms   (aim: p50 < 150 ms)"
    )
    waited = []
    for _ in range(boots_n):
        t = time.perf_counter()
        r = await api.post(
            "/v1/instances", params={"wait": "true"}, json={"memory_mb": 128, "disk_mb": 256}
        )
        waited.append((time.perf_counter() - t) * 1000)
        if r.status_code != 201 or r.json()["status"] != "running":
            raise RuntimeError(r.text)
        ids.append(r.json()["id"])
    print(
        f"create-to-running via API, wait=true (x{boots_n}): p50 {statistics.median(waited):7.1f} ms"
        f"   p95 {pct(waited, 0.95):7.1f} ms   (aim: p50 < 150 ms)"
    )
    # The node's own share of those boots (driver start, as the node timed it): the rest is
    # the API, the database and the link to the node.
    node_ms = [(await api.get(f"/v1/instances/{i}/vm")).json()["boot_ms"] for i in ids[boots_n:]]
    print(f"  of which the node's boot:        p50 {statistics.median(node_ms):7.1f} ms")
    await delete_all(api, ids)

    for _ in range(20):
        await api.post(f"/v1/instances/{warm}/exec", json={"command": ["true"]})
    rtts = []
    for _ in range(200):
        t = time.perf_counter()
        r = await api.post(f"/v1/instances/{warm}/exec", json={"command": ["true"]})
        rtts.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200, r.text
    gets = []
    for _ in range(100):
        t = time.perf_counter()
        await api.get(f"/v1/instances/{warm}")
        gets.append((time.perf_counter() - t) * 1000)
    print(f"GET instance via API:              p50 {statistics.median(gets):7.2f} ms")
    raw = await raw_agent_rtt(image, p.work)
    print(
        f"exec `true` round trip via API:    p50 {statistics.median(rtts):7.2f} ms"
        f"   p95 {pct(rtts, 0.95):7.2f} ms   (aim: p50 < 10 ms)"
    )
    print(f"exec `true` raw agent (driver):    p50 {statistics.median(raw):7.2f} ms")

    async def client(n: int) -> None:
        for _ in range(n):
            r = await api.post(f"/v1/instances/{warm}/exec", json={"command": ["true"]})
            assert r.status_code == 200, r.text

    per = 40
    t = time.perf_counter()
    await asyncio.gather(*[client(per) for _ in range(10)])
    el = time.perf_counter() - t
    print(f"exec throughput, 10 API clients:   {10 * per / el:7.0f} execs/s")

    idle: list[str] = []
    t = time.perf_counter()
    deadline = t + 240
    sem = asyncio.Semaphore(8)

    async def one() -> None:
        async with sem:
            if time.perf_counter() < deadline:
                iid, _ = await create_running(api, memory_mb=128, vcpus=0.25)
                idle.append(iid)

    await asyncio.gather(*[one() for _ in range(idle_n)])
    print(f"started {len(idle)} idle instances via the API in {time.perf_counter() - t:.1f} s")
    await asyncio.sleep(3)
    usage, rss = zip(*(memory_of(cg, i) for i in idle), strict=True)
    mib = 2**20
    mean_usage, mean_rss = statistics.mean(usage) / mib, statistics.mean(rss) / mib
    with open("/proc/meminfo") as f:
        total_mib = int(f.readline().split()[1]) / 1024
    print(
        f"idle instance memory:              RSS {mean_rss:.1f} MiB, cgroup usage (incl. cache)"
        f" {mean_usage:.1f} MiB"
    )
    print(
        f"  -> idle instances in {total_mib / 1024:.0f} GiB:      {int(total_mib / mean_rss)} by RSS,"
        f" {int(total_mib / mean_usage)} by cgroup usage   (aim: 200)"
    )
    await delete_all(api, [*idle, warm])
    print(load())


if __name__ == "__main__":
    asyncio.run(main())
