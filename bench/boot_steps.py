"""Where a sandbox boot's time goes: each step of SandboxDriver.start, timed, with and without
ready uid ranges (isolation.RangePool), boots of the two alternating so both see one load.

    .venv/bin/python bench/boot_steps.py [--boots 20]

Driver level (no API, no database). The steps are the driver's own functions, wrapped with a
timer here (the boot itself runs unchanged); "agent start" is from the launch to the agent's
first answer: the launcher, nsenter, bwrap's setup, Python's start and the agent's imports.
Prints p50 per step and the total, for both drivers. Run as root.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import CACHE, CONTROLLERS, load

import forkyard.node.drivers.sandbox as sandbox
from forkyard.node import isolation, seccomp, storage
from forkyard.node.cgroups import InstanceCgroup
from forkyard.node.drivers.base import SandboxSpec
from forkyard.node.drivers.sandbox import SandboxDriver
from forkyard.node.images import ensure_default_image

STEPS = [
    ("blank disk (reflink clone)", SandboxDriver, "_blank_disk"),
    ("disk loop mount", storage, "mount_disk"),
    ("cgroups", InstanceCgroup, "create"),
    ("uid range + user namespaces", SandboxDriver, "_claim_range"),
    ("idmapped mounts", isolation, "idmapped_bind"),
    ("overlay mount", storage, "mount_overlay"),
    ("seccomp program", seccomp, "program_fd"),
    ("launch (fork/exec launcher)", sandbox, "spawn"),
    ("agent start + first answer", sandbox, "wait_for_agent"),
]
current: dict[str, float] = defaultdict(float)


def timed(name: str, f: Callable[..., Any]) -> Callable[..., Any]:
    if asyncio.iscoroutinefunction(f):

        @functools.wraps(f)
        async def wrapper(*args: Any, **kw: Any) -> Any:
            t = time.perf_counter()
            try:
                return await f(*args, **kw)
            finally:
                current[name] += (time.perf_counter() - t) * 1000

        return wrapper

    @functools.wraps(f)
    def sync_wrapper(*args: Any, **kw: Any) -> Any:
        t = time.perf_counter()
        try:
            return f(*args, **kw)
        finally:
            current[name] += (time.perf_counter() - t) * 1000

    return sync_wrapper


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--boots", type=int, default=20)
    args = ap.parse_args()
    for name, owner, attr in STEPS:
        setattr(owner, attr, timed(name, getattr(owner, attr)))
    image = ensure_default_image(CACHE, cache_dir=CACHE)
    work = Path(tempfile.mkdtemp(prefix="forkyard-steps-"))
    drivers = {
        "ready ranges": SandboxDriver(work / "a", cgroup_parent=f"forkyard-steps-a-{os.getpid()}"),
        "no ready range": SandboxDriver(
            work / "b", cgroup_parent=f"forkyard-steps-b-{os.getpid()}"
        ),
    }
    drivers["no ready range"].ranges.size = 0  # every boot claims and makes its own
    figures: dict[str, dict[str, list[float]]] = {k: defaultdict(list) for k in drivers}
    booted: dict[str, list[str]] = {k: [] for k in drivers}
    print(load())
    try:
        for i in range(args.boots + 1):
            for key in drivers if i % 2 == 0 else reversed(list(drivers)):
                d = drivers[key]
                spec = SandboxSpec(f"steps-{i}", image, memory_mb=128, disk_mb=256)
                await asyncio.sleep(0.05)  # let a refill after the previous boot run
                current.clear()
                t = time.perf_counter()
                await d.start(spec)
                total = (time.perf_counter() - t) * 1000
                booted[key].append(spec.instance_id)
                if i == 0:
                    continue  # the first boot of a driver fills caches (blank disk, layers)
                figures[key]["total"].append(total)
                for name, _, _ in STEPS:
                    figures[key][name].append(current.get(name, 0.0))
    finally:
        for key, d in drivers.items():
            for iid in booted[key]:
                await d.destroy(iid)
            await d.close()
            d.release_store()
            for c in CONTROLLERS:
                p = Path("/sys/fs/cgroup") / c / d.cgroup_parent
                if p.is_dir():
                    p.rmdir()
        shutil.rmtree(work, ignore_errors=True)
    keys = list(drivers)
    print(f"p50 per boot (x{args.boots}){'':14s}" + "".join(f"{k:>18s}" for k in keys))
    for name in [n for n, _, _ in STEPS] + ["total"]:
        row = "".join(f"{statistics.median(figures[k][name]):15.2f} ms" for k in keys)
        print(f"  {name:34s}{row}")
    print(load())


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
