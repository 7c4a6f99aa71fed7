"""Instance state on the sandbox driver: checkpoint, rollback and fork latency, disk per idle fork.

    .venv/bin/python bench/state.py [--sizes 10,100,1000] [--forks 1,10,50]

Needs root (bubblewrap, cgroups, loop mounts). Baseline in the same run: `cp -a` of the same
files (the instance's writable layer) into the same store filesystem. Each checkpoint size is
measured twice: right after the files were written (their data still dirty in the page cache:
the capture has to write it to disk first) and after the kernel wrote it back (`sync`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from forkyard.node.drivers.base import SandboxSpec
from forkyard.node.drivers.sandbox import SandboxDriver
from forkyard.node.images import ensure_default_image


def ms(t0: float) -> float:
    return (time.monotonic() - t0) * 1000


def used(driver: SandboxDriver) -> int:
    os.sync()
    st = os.statvfs(driver.store_dir)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def cp_a(src: Path, dst: Path, *, sync: bool) -> float:
    t0 = time.monotonic()
    subprocess.run(["cp", "-a", "--reflink=never", str(src), str(dst)], check=True)
    if sync:
        os.sync()
    took = ms(t0)
    shutil.rmtree(dst)
    return took


async def write_mb(driver: SandboxDriver, iid: str, mb: int, tag: str) -> None:
    # 10 MB files of random data (incompressible, no zero pages), in the instance's own /root.
    n = max(1, mb // 10)
    per = mb * 1024 * 1024 // n
    r = await driver.exec(
        iid,
        f"mkdir -p /root/{tag} && for i in $(seq {n}); do "
        f"head -c {per} /dev/urandom > /root/{tag}/f$i; done",
        timeout=600,
    )
    assert r.exit_code == 0, r.stderr


def spec(image: Path, **kw) -> SandboxSpec:
    kw.setdefault("memory_mb", 256)
    return SandboxSpec(instance_id=f"b-{uuid.uuid4().hex[:10]}", image=image, **kw)


async def bench_checkpoints(driver: SandboxDriver, image: Path, sizes: list[int]) -> None:
    print("\n## checkpoint (changed files -> new layer), rollback")
    print(
        f"{'changed':>8} | {'dirty: total':>12} {'pause':>8} | {'written back: total':>19} "
        f"{'pause':>8} | {'cp -a':>9} {'cp -a+sync':>10} | {'rollback':>9}"
    )
    for mb in sizes:
        s = spec(image, disk_mb=max(1024, mb * 3))
        await driver.start(s)
        iid = s.instance_id
        layers = []
        try:
            await write_mb(driver, iid, mb, "a")
            t0 = time.monotonic()
            dirty = await driver.checkpoint(iid, f"{iid}-1")
            dirty_ms = ms(t0)
            layers.append(dirty.layer_id)
            await write_mb(driver, iid, mb, "b")
            os.sync()
            t0 = time.monotonic()
            clean = await driver.checkpoint(iid, f"{iid}-2")
            clean_ms = ms(t0)
            layers.append(clean.layer_id)
            upper = driver.instance_dir(iid) / "disk" / "upper" / "root" / "b"
            dst = driver.store_dir / f"cp-baseline-{iid}"
            base = cp_a(upper, dst, sync=False)
            base_sync = cp_a(upper, dst, sync=True)
            await driver.write_file(iid, "/root/a/f1", b"mutated")
            t0 = time.monotonic()
            await driver.rollback(iid, dirty.layer_id)
            rb_ms = ms(t0)
            ok = (await driver.exec(iid, "test -e /root/b || echo ok")).stdout.strip() == b"ok"
            assert ok, "rollback did not restore the tree"
            print(
                f"{mb:>5} MB | {dirty_ms:>9.1f} ms {dirty.pause_ms:>5.1f} ms | "
                f"{clean_ms:>16.1f} ms {clean.pause_ms:>5.1f} ms | "
                f"{base:>6.1f} ms {base_sync:>7.1f} ms | {rb_ms:>6.1f} ms"
            )
        finally:
            await driver.destroy(iid)
            for lid in layers:
                await driver.delete_layer(lid)


async def bench_forks(driver: SandboxDriver, image: Path, counts: list[int]) -> None:
    print("\n## fork (parent with 100 MB written; children running on return)")
    print(
        f"{'count':>5} | {'total':>9} {'per child':>10} | {'capture':>8} | "
        f"{'disk per idle fork':>18} | {'cp -a per child':>15}"
    )
    parent = spec(image, disk_mb=1024)
    await driver.start(parent)
    try:
        await write_mb(driver, parent.instance_id, 100, "data")
        os.sync()
        upper = driver.instance_dir(parent.instance_id) / "disk" / "upper"
        base = cp_a(upper, driver.store_dir / "cp-baseline-fork", sync=False)
        for count in counts:
            kids = [spec(image, memory_mb=64) for _ in range(count)]
            layer_id = f"fork-{uuid.uuid4().hex[:8]}"
            await driver.checkpoint(parent.instance_id, f"{layer_id}-warm")  # settle the parent
            before = used(driver)
            t0 = time.monotonic()
            results = await driver.fork(parent.instance_id, kids, layer_id=layer_id)
            total = ms(t0)
            errors = [r for r in results if isinstance(r, Exception)]
            await asyncio.sleep(1.0)  # idle
            per_fork = (used(driver) - before) / count
            capture = driver.get_layer(layer_id).capture_ms
            print(
                f"{count:>5} | {total:>6.0f} ms {total / count:>7.1f} ms | {capture:>5.1f} ms | "
                f"{per_fork / 1024:>15.0f} KB | {base:>12.1f} ms"
                + (f"  ({len(errors)} failed: {errors[0]!r})" if errors else "")
            )
            await asyncio.gather(*(driver.destroy(k.instance_id) for k in kids))
            for lid in (layer_id, f"{layer_id}-warm"):
                await driver.delete_layer(lid)
    finally:
        await driver.destroy(parent.instance_id)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10,100,1000")
    ap.add_argument("--forks", default="1,10,50")
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()
    cache = Path(os.environ.get("FORKYARD_IMAGE_CACHE", "/var/cache/forkyard/images"))
    image = ensure_default_image(cache, cache_dir=cache)
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="forkyard-bench-state-"))
    driver = SandboxDriver(data_dir, cgroup_parent=f"forkyard-bench-{os.getpid()}", store_mb=65536)
    print(
        f"storage mode: {driver.storage_mode()}  (store {driver.store_dir}, volume "
        f"{driver.store_volume}), {os.cpu_count()} cpus"
    )
    try:
        await bench_checkpoints(driver, image, [int(x) for x in args.sizes.split(",")])
        await bench_forks(driver, image, [int(x) for x in args.forks.split(",")])
    finally:
        for iid in driver.list_owned():
            await driver.destroy(iid)
        await driver.close()
        driver.release_store()
        for c in ("memory", "pids", "cpu", "cpuacct", "freezer"):
            p = Path("/sys/fs/cgroup") / c / driver.cgroup_parent
            if p.is_dir():
                p.rmdir()
        if args.data_dir is None:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
