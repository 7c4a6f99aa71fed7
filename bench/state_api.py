"""Instance state through the real API: checkpoint, rollback and fork latency, disk per idle fork.

    .venv/bin/python bench/state_api.py [--sizes 10,100,1000] [--forks 1,10,50]

The whole platform (bench/harness.py: PostgreSQL, API + worker over HTTP, a `forkyard node`
subprocess). Every figure is the client's wall time of one API call. Baseline in the same run:
`cp -a` of the same files on the node's store filesystem. Prints; asserts only that rollback
restored the tree. Needs root.

- checkpoint: `POST /v1/instances/{id}/checkpoints` right after N MB of files were written
  (dirty in the page cache: the capture writes them to disk first) and again after `sync`.
- rollback: `POST /v1/instances/{id}/rollback` to the first checkpoint (it also keeps the state
  before as a checkpoint, and reboots the instance's processes).
- fork: `POST /v1/instances/{id}/fork` with count 1, 10, 50 of a parent holding 100 MB; the
  call returns once every child runs (wait=true); extra store disk per idle child.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path

import httpx
from harness import Platform, cp_a, delete_all, first_instance, load, ms, platform

from forkyard.node.runner import HEARTBEAT_EVERY_S


async def call(
    api: httpx.AsyncClient, path: str, body: dict, expect: int = 201
) -> tuple[dict, float]:
    t0 = time.monotonic()
    r = await api.post(path, json=body)
    took = ms(t0)
    if r.status_code != expect:
        raise RuntimeError(f"{path}: {r.status_code} {r.text}")
    return r.json(), took


async def write_mb(api: httpx.AsyncClient, iid: str, mb: int, tag: str) -> None:
    """N MB of random data (incompressible) in 10 MB files under /root/<tag>."""
    n = max(1, mb // 10)
    per = mb * 1024 * 1024 // n
    cmd = (
        f"mkdir -p /root/{tag} && for i in $(seq {n}); do "
        f"head -c {per} /dev/urandom > /root/{tag}/f$i; done"
    )
    r = await api.post(f"/v1/instances/{iid}/exec", json={"command": cmd, "timeout_s": 600})
    if r.status_code != 200 or r.json()["exit_code"] != 0:
        raise RuntimeError(r.text)


async def run_sh(api: httpx.AsyncClient, iid: str, cmd: str) -> str:
    r = await api.post(f"/v1/instances/{iid}/exec", json={"command": cmd})
    r.raise_for_status()
    return str(r.json()["stdout"])


def upper_of(p: Platform, iid: str) -> Path:
    return p.node_dir / "instances" / iid / "disk" / "upper"


async def bench_checkpoints(p: Platform, sizes: list[int]) -> None:
    api = p.api
    print("\n## checkpoint and rollback via the API (client wall time per call)")
    print(
        f"{'changed':>8} | {'just written':>12} {'pause':>7} | {'after sync':>10} {'pause':>7} | "
        f"{'cp -a':>8} {'cp -a+sync':>10} | {'rollback':>9}"
    )
    for mb in sizes:
        iid = await first_instance(api, memory_mb=256, disk_mb=max(1024, mb * 3))
        try:
            await write_mb(api, iid, mb, "a")
            dirty, dirty_ms = await call(api, f"/v1/instances/{iid}/checkpoints", {"name": "a"})
            await write_mb(api, iid, mb, "b")
            os.sync()
            clean, clean_ms = await call(api, f"/v1/instances/{iid}/checkpoints", {"name": "b"})
            src = upper_of(p, iid) / "root" / "b"
            dst = p.node_dir / "store" / f"cp-baseline-{iid}"
            base, base_sync = cp_a(src, dst, sync=False), cp_a(src, dst, sync=True)
            _, rb_ms = await call(
                api, f"/v1/instances/{iid}/rollback", {"checkpoint_id": dirty["id"]}, expect=200
            )
            out = await run_sh(api, iid, "test -e /root/b || echo gone; ls /root/a | wc -l")
            assert out.split() == ["gone", str(max(1, mb // 10))], out
            print(
                f"{mb:>5} MB | {dirty_ms:>9.1f} ms {dirty['pause_ms']:>4.1f} ms | "
                f"{clean_ms:>7.1f} ms {clean['pause_ms']:>4.1f} ms | "
                f"{base:>5.0f} ms {base_sync:>7.0f} ms | {rb_ms:>6.1f} ms"
            )
        finally:
            await delete_all(api, [iid])


async def bench_forks(p: Platform, counts: list[int]) -> None:
    api = p.api
    print("\n## fork via the API (parent with 100 MB written; children running on return)")
    print(
        f"{'count':>5} | {'total':>9} {'per child':>10} | {'fork_ms':>8} | "
        f"{'disk per idle fork':>18} | {'cp -a per child':>15} | failed"
    )
    parent = await first_instance(api, memory_mb=256, disk_mb=1024)
    try:
        await write_mb(api, parent, 100, "data")
        os.sync()
        base = cp_a(upper_of(p, parent), p.node_dir / "store" / "cp-baseline-fork", sync=False)
        for count in counts:
            await call(api, f"/v1/instances/{parent}/checkpoints", {"name": "settle"})
            before = p.store_used()
            out, total = await call(api, f"/v1/instances/{parent}/fork", {"count": count})
            kids = [c["instance"]["id"] for c in out["children"] if c["instance"]]
            errors = [c["error"] for c in out["children"] if c["error"]]
            await asyncio.sleep(HEARTBEAT_EVERY_S + 1.5)  # idle, and past a node heartbeat
            for k in kids:  # wait=true answered once they ran; report any that stopped since
                child = (await api.get(f"/v1/instances/{k}")).json()
                if child["status"] != "running":
                    errors.append(f"{k} {child['status']}: {child.get('status_reason')}")
            per_fork = (p.store_used() - before) / max(1, len(kids))
            print(
                f"{count:>5} | {total:>6.0f} ms {total / count:>7.1f} ms | "
                f"{out['fork_ms']:>5.0f} ms | {per_fork / 1024:>15.0f} KB | {base:>12.1f} ms"
                + f" | {len(errors)} failed"
                + (f" ({errors[0]})" if errors else "")
            )
            await delete_all(api, kids)
    finally:
        await delete_all(api, [parent])


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10,100,1000")
    ap.add_argument("--forks", default="1,10,50")
    args = ap.parse_args()
    async with platform() as p:
        print(f"state via the API; node store {p.node_dir / 'store'}; {load()}")
        await bench_checkpoints(p, [int(x) for x in args.sizes.split(",") if x])
        await bench_forks(p, [int(x) for x in args.forks.split(",") if x])
        print(f"\n{load()}")


if __name__ == "__main__":
    asyncio.run(main())
