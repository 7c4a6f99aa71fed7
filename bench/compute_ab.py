"""Create-to-running and exec round trip of two source trees, interleaved in one run.

On a shared, loaded machine two benches run one after the other see different loads; here
both platforms are up at once and take turns, one create (or one batch of execs) each, in
alternating order, so both see the same load. Beside them, a raw `bwrap ... true` per round.

    .venv/bin/python bench/compute_ab.py --base /tmp/base0/src [--head src] [--boots 30]
        [--level driver]   # the node alone: SandboxDriver.start, no API or database

(`git archive <commit> | tar -x -C /tmp/base0` gives a base tree.) Each side is a process of
its own running this file as `--worker` with its tree first on PYTHONPATH: a whole platform
(bench/harness.py) per side. Prints p50/p95 of each and the ratios head/base. Run as root.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


# --- a worker: one platform, driven over stdin/stdout, one JSON line per command ---


async def driver_worker() -> None:
    """The node alone: SandboxDriver.start of a new instance per "boot" (no API, no database)."""
    import shutil
    import tempfile

    sys.path.insert(0, str(HERE))
    from harness import CACHE, CONTROLLERS

    from forkyard.node.drivers.base import SandboxSpec
    from forkyard.node.drivers.sandbox import SandboxDriver
    from forkyard.node.images import ensure_default_image

    image = ensure_default_image(CACHE, cache_dir=CACHE)
    work = Path(tempfile.mkdtemp(prefix="forkyard-ab-"))
    driver = SandboxDriver(work / "node", cgroup_parent=f"forkyard-ab-{os.getpid()}")
    ids: list[str] = []
    try:
        await driver.start(SandboxSpec("ab-warm", image, memory_mb=128, disk_mb=256))
        ids.append("ab-warm")
        print(json.dumps({"ready": True}), flush=True)
        while line := await asyncio.to_thread(sys.stdin.readline):
            cmd = line.strip()
            if cmd == "boot":
                spec = SandboxSpec(f"ab-{len(ids)}", image, memory_mb=128, disk_mb=256)
                t = time.perf_counter()
                info = await driver.start(spec)
                ms = (time.perf_counter() - t) * 1000
                ids.append(spec.instance_id)
                print(json.dumps({"ms": ms, "node_ms": info.boot_ms}), flush=True)
            elif cmd == "exec":
                rtts = []
                for _ in range(20):
                    t = time.perf_counter()
                    await driver.exec("ab-warm", ["true"])
                    rtts.append((time.perf_counter() - t) * 1000)
                print(json.dumps({"rtts": rtts}), flush=True)
            elif cmd == "quit":
                break
    finally:
        for iid in ids:
            await driver.destroy(iid)
        await driver.close()
        driver.release_store()
        for c in CONTROLLERS:
            p = Path("/sys/fs/cgroup") / c / driver.cgroup_parent
            if p.is_dir():
                p.rmdir()
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"done": True}), flush=True)


async def worker() -> None:
    sys.path.insert(0, str(HERE))
    from harness import delete_all, first_instance, platform

    for attempt in range(3):  # on a loaded machine an API may miss the harness's start limit
        try:
            # The SSH gateway on any free port: both sides' trees may have one, and 2222 may be
            # taken by another run (a tree without a gateway ignores the setting).
            async with platform(ssh_port=0) as p:
                await serve(p.api, delete_all, first_instance)
            break
        except RuntimeError as exc:
            if "did not start" not in str(exc) or attempt == 2:
                raise
    print(json.dumps({"done": True}), flush=True)


async def serve(api: Any, delete_all: Any, first_instance: Any) -> None:
    """Answer the coordinator's commands on one platform's API until "quit"."""
    warm = await first_instance(api)
    ids: list[str] = []
    print(json.dumps({"ready": True}), flush=True)
    while line := await asyncio.to_thread(sys.stdin.readline):
        cmd = line.strip()
        if cmd == "boot":
            t = time.perf_counter()
            r = await api.post(
                "/v1/instances",
                params={"wait": "true"},
                json={"memory_mb": 128, "disk_mb": 256},
            )
            ms = (time.perf_counter() - t) * 1000
            if r.status_code != 201 or r.json()["status"] != "running":
                raise RuntimeError(r.text)
            iid = r.json()["id"]
            ids.append(iid)
            node_ms = (await api.get(f"/v1/instances/{iid}/vm")).json()["boot_ms"]
            print(json.dumps({"ms": ms, "node_ms": node_ms}), flush=True)
        elif cmd == "exec":
            rtts = []
            for _ in range(20):
                t = time.perf_counter()
                r = await api.post(f"/v1/instances/{warm}/exec", json={"command": ["true"]})
                rtts.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200, r.text
            print(json.dumps({"rtts": rtts}), flush=True)
        elif cmd == "quit":
            break
    await delete_all(api, [*ids, warm])


# --- the coordinator ---


class Side:
    def __init__(self, name: str, src: Path, level: str) -> None:
        self.name = name
        env = {**os.environ, "PYTHONPATH": str(src)}
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", level],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        self.boots: list[float] = []
        self.node: list[float] = []
        self.rtts: list[float] = []
        self.rest: list[float] = []

    def ask(self, cmd: str | None) -> dict:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if cmd is not None:
            self.proc.stdin.write(cmd + "\n")
            self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name} worker died")
        return json.loads(line)


def bwrap_true(image: Path) -> float:
    argv = ["bwrap", "--ro-bind", str(image), "/", "--proc", "/proc", "--dev", "/dev",
            "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "true"]  # fmt: skip
    t = time.perf_counter()
    subprocess.run(argv, check=True)
    return (time.perf_counter() - t) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", choices=("api", "driver"))
    ap.add_argument(
        "--level",
        choices=("api", "driver"),
        default="api",
        help="api: a whole platform per side; driver: SandboxDriver alone",
    )
    ap.add_argument("--base", type=Path)
    ap.add_argument("--head", type=Path, default=HERE.parent / "src")
    ap.add_argument("--boots", type=int, default=30)
    ap.add_argument("--exec-rounds", type=int, default=10)
    args = ap.parse_args()
    if args.worker:
        asyncio.run(worker() if args.worker == "api" else driver_worker())
        return
    if args.base is None:
        ap.error("--base is required")
    from harness import CACHE, load

    from forkyard.node.images import ensure_default_image

    image = ensure_default_image(CACHE, cache_dir=CACHE)
    print(load())
    sides: list[Side] = []
    try:
        for name, src in (("base", args.base), ("head", args.head)):
            sides.append(Side(name, src.resolve(), args.level))
            sides[-1].ask(None)  # ready: one platform starts at a time, as on a loaded machine
        raw = []
        for i in range(args.boots):
            raw.append(bwrap_true(image))
            for s in sides if i % 2 == 0 else reversed(sides):
                r = s.ask("boot")
                s.boots.append(r["ms"])
                s.node.append(r["node_ms"])
        for i in range(args.exec_rounds):
            for s in sides if i % 2 == 0 else reversed(sides):
                s.rtts += s.ask("exec")["rtts"]
    finally:
        for s in sides:  # each cleans up its platform, whatever happened to the other
            if s.proc.poll() is None:
                with contextlib.suppress(Exception):
                    s.ask("quit")
                s.proc.wait()
    base, head = sides
    print(
        f"raw `bwrap ... true` (x{len(raw)}, between rounds): p50 {statistics.median(raw):6.1f} ms"
    )
    print(f"{'':34s}{'base':>16s}{'head':>16s}{'head/base':>11s}")
    rows = [
        ("create-to-running p50", statistics.median, "boots"),
        ("create-to-running p95", lambda xs: pct(xs, 0.95), "boots"),
        ("  the node's boot p50", statistics.median, "node"),
        ("exec `true` round trip p50", statistics.median, "rtts"),
    ]
    for s in sides:  # per create: what the node's boot leaves (API, database, node link)
        s.rest = [m - n for m, n in zip(s.boots, s.node, strict=True)]
    rows.insert(3, ("  the rest p50", statistics.median, "rest"))
    for label, f, attr in rows:
        b, h = f(getattr(base, attr)), f(getattr(head, attr))
        print(f"{label:34s}{b:13.1f} ms{h:13.1f} ms{h / b:10.2f}x")
    print(load())


if __name__ == "__main__":
    main()
