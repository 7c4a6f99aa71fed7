"""Raw figures of the sandbox driver on this machine (prints; asserts nothing).

Run as root: /work/main/.venv/bin/python bench/compute_raw.py [--idle 50]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from forkyard.node.drivers.base import SandboxSpec
from forkyard.node.drivers.sandbox import SandboxDriver
from forkyard.node.images import ensure_default_image


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def bwrap_baseline(image: Path, n: int = 20) -> list[float]:
    argv = ["bwrap", "--ro-bind", str(image), "/", "--proc", "/proc", "--dev", "/dev",
            "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "true"]  # fmt: skip
    out = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(argv, check=True)
        out.append((time.perf_counter() - t) * 1000)
    return out


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--idle", type=int, default=50)
    args = ap.parse_args()
    cache = Path(os.environ.get("FORKYARD_IMAGE_CACHE", "/var/cache/forkyard/images"))
    image = ensure_default_image(cache, cache_dir=cache)
    data = Path(tempfile.mkdtemp(prefix="forkyard-bench-"))
    driver = SandboxDriver(data, cgroup_parent=f"forkyard-bench-{os.getpid()}")
    try:
        base = bwrap_baseline(image)
        print(f"raw bwrap true:             p50 {statistics.median(base):6.1f} ms")

        spec = SandboxSpec("bench-boot", image, memory_mb=512, disk_mb=512)
        await driver.start(spec)  # creates the disk once
        await driver.stop(spec.instance_id)
        boots = []
        for _ in range(20):
            t = time.perf_counter()
            await driver.start(spec)
            boots.append((time.perf_counter() - t) * 1000)
            await driver.stop(spec.instance_id)
        print(
            f"start to agent ready (x20): p50 {statistics.median(boots):6.1f} ms"
            f"  p95 {pct(boots, 0.95):6.1f} ms"
        )
        t = time.perf_counter()
        await driver.destroy(spec.instance_id)
        new = SandboxSpec("bench-new", image, memory_mb=512, disk_mb=512)
        t = time.perf_counter()
        await driver.start(new)
        print(f"first start incl. mkfs:     {(time.perf_counter() - t) * 1000:6.1f} ms")

        rtts = []
        for _ in range(200):
            t = time.perf_counter()
            await driver.exec(new.instance_id, ["true"])
            rtts.append((time.perf_counter() - t) * 1000)
        print(
            f"exec `true` round trip:     p50 {statistics.median(rtts):6.2f} ms  p95 {pct(rtts, 0.95):6.2f} ms"
        )
        pings = []
        for _ in range(200):
            t = time.perf_counter()
            await driver.ping(new.instance_id)
            pings.append((time.perf_counter() - t) * 1000)
        print(f"agent ping:                 p50 {statistics.median(pings):6.3f} ms")

        async def worker(n: int) -> None:
            for _ in range(n):
                await driver.exec(new.instance_id, ["true"])

        per = 50
        t = time.perf_counter()
        await asyncio.gather(*[worker(per) for _ in range(10)])
        el = time.perf_counter() - t
        print(f"exec throughput, 10 clients: {10 * per / el:6.0f} execs/s")
        await driver.destroy(new.instance_id)

        ids = [f"bench-idle-{i}" for i in range(args.idle)]
        t = time.perf_counter()
        for i in ids:
            await driver.start(SandboxSpec(i, image, memory_mb=256, disk_mb=300))
        print(f"started {args.idle} instances in {time.perf_counter() - t:.1f} s")
        await asyncio.sleep(2)
        usage, rss = [], []
        for i in ids:
            s = await driver.stats(i)
            usage.append(s.memory_bytes)
            rss.append(s.memory_rss_bytes)
        mib = 1024 * 1024
        mean_rss, mean_usage = statistics.mean(rss) / mib, statistics.mean(usage) / mib
        print(
            f"idle instance memory:       RSS {mean_rss:.1f} MiB, cgroup usage (incl. cache) {mean_usage:.1f} MiB"
        )
        print(
            f"  -> instances in 24 GiB:   {int(24 * 1024 / mean_rss)} by RSS, {int(24 * 1024 / mean_usage)} by cgroup usage"
        )
        for i in ids:
            await driver.destroy(i)
    finally:
        for i in driver.list_owned():
            await driver.destroy(i)
        await driver.close()
        for c in ("memory", "pids", "cpu", "cpuacct", "freezer"):
            p = Path("/sys/fs/cgroup") / c / driver.cgroup_parent
            if p.is_dir():
                p.rmdir()
        subprocess.run(["rm", "-rf", str(data)])


if __name__ == "__main__":
    asyncio.run(main())
