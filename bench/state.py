"""Instance state on the sandbox driver: checkpoint, rollback and fork latency, disk per idle fork.

    .venv/bin/python bench/state.py [--sizes 10,100,1000] [--forks 1,10,50]

Needs root (bubblewrap, cgroups, loop mounts). Baseline in the same run: `cp -a` of the same
files (the instance's writable layer) into the same store filesystem. Each checkpoint size is
measured twice: right after the files were written (their data still dirty in the page cache:
the capture has to write it to disk first) and after the kernel wrote it back (`sync`).

Also printed: where a capture of just-written data spends its time (each layer of the storage
stack written back and flushed in turn, then the paused part step by step), and the floor: this
machine's disk making the same amount of fresh data durable (buffered write + fdatasync).
The API-level figures are bench/state_api.py.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from harness import cp_a, ms

from forkyard.node import storage
from forkyard.node.drivers.base import SandboxSpec
from forkyard.node.drivers.sandbox import SandboxDriver, _frozen
from forkyard.node.images import ensure_default_image

_libc = ctypes.CDLL(None, use_errno=True)
SYNC_FILE_RANGE_ALL = 1 | 2 | 4  # wait before, write, wait after: write back, no device flush


def used(driver: SandboxDriver) -> int:
    os.sync()
    st = os.statvfs(driver.store_dir)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


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


def write_back(path: Path) -> None:
    """Write a file's dirty pages to the device below it, without a cache flush."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.sync_file_range(fd, ctypes.c_longlong(0), ctypes.c_longlong(0),
                                 ctypes.c_uint(SYNC_FILE_RANGE_ALL)) != 0:  # fmt: skip
            raise OSError(ctypes.get_errno(), "sync_file_range")
    finally:
        os.close(fd)


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def disk_floor(directory: Path, mb: int, reps: int = 3) -> tuple[float, float]:
    """(ms to write mb of fresh data into the page cache, ms for fdatasync to make it durable),
    medians: what any durable capture of mb just-written MB costs at least on this disk."""
    data = os.urandom(1 << 20)
    writes, syncs = [], []
    for _ in range(reps):
        path = directory / f"floor-{uuid.uuid4().hex[:8]}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            t0 = time.monotonic()
            for i in range(mb):
                os.pwrite(fd, data, i << 20)
            writes.append(ms(t0))
            t0 = time.monotonic()
            os.fdatasync(fd)
            syncs.append(ms(t0))
        finally:
            os.close(fd)
            path.unlink()
    return statistics.median(writes), statistics.median(syncs)


async def _breakdown_once(driver: SandboxDriver, image: Path, mb: int) -> list[tuple[str, float]]:
    s = spec(image, disk_mb=max(1024, mb * 3))
    await driver.start(s)
    iid = s.instance_id
    dest = driver.layers.begin(f"{iid}-bd")
    try:
        await write_mb(driver, iid, mb, "a")
        mnt = driver.instance_dir(iid) / "disk"
        files = sorted((mnt / "upper" / "root" / "a").iterdir())
        disk, volume, cg = driver.disk_image(iid), driver.store_volume, driver.cgroup(iid)
        plan = [
            ("before the pause: instance fs data -> its loop device (disk image's page cache)",
             lambda: [write_back(f) for f in files]),
            ("before the pause: disk image (XFS store) -> store volume's page cache",
             lambda: write_back(disk)),
            ("before the pause: store volume file -> the machine's disk (no flush)",
             lambda: volume and write_back(volume)),
            ("before the pause: syncfs of the instance fs (journal + cache flushes down)",
             lambda: storage.syncfs(mnt)),
            ("pause: cgroup freeze", lambda: cg.freeze(True)),
            ("pause: syncfs of the instance fs (what was written since)",
             lambda: _frozen(cg) and storage.syncfs(mnt)),
            ("pause: EXT4_IOC_CHECKPOINT (journal to home locations)",
             lambda: storage.checkpoint_journal(mnt)),
            ("pause: FICLONE of the disk image", lambda: driver.layers.clone(disk, dest / "d")),
            ("pause: cgroup thaw", lambda: cg.freeze(False)),
            ("after: syncfs of the store (the clone's metadata durable)",
             lambda: storage.syncfs(dest)),
            ("(old pause step, for comparison: FIFREEZE + FITHAW, nothing left to write)",
             lambda: (storage.freeze_fs(mnt), storage.thaw_fs(mnt))),
        ]  # fmt: skip
        out = []
        for label, fn in plan:
            t0 = time.monotonic()
            fn()
            out.append((label, ms(t0)))
        return out
    finally:
        await driver.destroy(iid)
        driver.layers.abort(dest)


async def bench_breakdown(driver: SandboxDriver, image: Path, mb: int, reps: int) -> None:
    """The checkpoint path of the driver, step by step, on mb MB just written (medians)."""
    print(f"\n## where a checkpoint of {mb} MB just written spends its time (median of {reps})")
    steps: dict[str, list[float]] = {}
    for _ in range(reps):
        for label, took in await _breakdown_once(driver, image, mb):
            steps.setdefault(label, []).append(took)
    for label, xs in steps.items():
        print(f"{statistics.median(xs):8.1f} ms  {label}")
    total = sum(statistics.median(xs) for label, xs in steps.items() if not label.startswith("("))
    print(f"{total:8.1f} ms  total (sum of medians)")
    w, f = disk_floor(driver.store_dir, mb)
    mbps = mb / ((w + f) / 1000)
    print(
        f"floor, the same {mb} MB written fresh on the store fs and made durable: write {w:.0f} ms"
        f" + fdatasync {f:.0f} ms ({mbps:.0f} MB/s end to end)"
    )


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
    ap.add_argument("--breakdown", type=int, default=100, help="MB; 0 skips")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    cache = Path(os.environ.get("FORKYARD_IMAGE_CACHE", "/var/cache/forkyard/images"))
    image = ensure_default_image(cache, cache_dir=cache)
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="forkyard-bench-state-"))
    driver = SandboxDriver(data_dir, cgroup_parent=f"forkyard-bench-{os.getpid()}", store_mb=65536)
    print(
        f"storage mode: {driver.storage_mode()}  (store {driver.store_dir}, volume "
        f"{driver.store_volume}), {os.cpu_count()} cpus, load average {os.getloadavg()}"
    )
    try:
        if args.breakdown:
            await bench_breakdown(driver, image, args.breakdown, args.reps)
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
