"""Preview URLs of two source trees, interleaved in one run: the request overhead over direct
and a download's MB/s, with both platforms up at once taking turns (as bench/compute_ab.py
does for creates), so that both see the same load on a shared machine.

    .venv/bin/python bench/preview_ab.py --base /tmp/base0/src [--head src] [--rounds 20]

(`git archive <commit> | tar -x -C /tmp/base0` gives a base tree.) Each side is a process of
its own running this file as `--worker` with its tree first on PYTHONPATH: a whole platform
(bench/harness.py) with an instance running `python3 -m http.server` and a forward to it. A
round is 20 requests for a 2 KiB file, alternating direct (a socket in the instance's network
namespace) and through the preview URL, with the same raw-socket client (bench/access.py).
Prints per side: p50 of each, the preview's added ms and ratio to direct, the CPU time the
side's API and node processes spent per preview request (user+system, from /proc), then one
download each way in MB/s; and the ratios head/base. Run as root.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PER_ROUND = 20


def descendants_cpu_s(root: int) -> float:
    """User+system seconds of every Python process below `root` (the API and the node)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry))
    total, todo = 0.0, list(children.get(root, []))
    tick = os.sysconf("SC_CLK_TCK")
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            if "python" not in Path(f"/proc/{pid}/cmdline").read_text():
                continue
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


async def worker(mb: int) -> None:
    sys.path.insert(0, str(HERE))
    from harness import platform

    for attempt in range(3):  # on a loaded machine an API may miss the harness's start limit
        try:
            async with platform(ssh_port=0) as p:
                await serve(p, mb)
            return
        except RuntimeError as exc:
            if "did not start" not in str(exc) or attempt == 2:
                raise


async def serve(p: Any, mb: int) -> None:
    """Answer the coordinator's commands on one platform until "quit"."""
    import access
    import httpx
    from harness import first_instance

    iid = await first_instance(p.api, memory_mb=256, disk_mb=mb + 512)
    netns = await access.start_server(p, iid, mb)
    r = await p.api.post(f"/v1/instances/{iid}/port-forwards", json={"port": access.SMALL_PORT})
    r.raise_for_status()
    host = httpx.URL(r.json()["url"]).netloc.decode()
    key = p.api.headers["Authorization"]
    small = access.raw_request("/small", host, key)
    big = access.raw_request("/big", host, key)
    for _ in range(20):
        await access.direct(netns)
        await access.raw_get(p.url, small)
    print(json.dumps({"ready": True}), flush=True)
    while line := await asyncio.to_thread(sys.stdin.readline):
        cmd = line.strip()
        if cmd == "round":
            direct, preview, cpu = [], [], 0.0
            for _ in range(PER_ROUND):
                t = time.perf_counter()
                await access.direct(netns)
                direct.append((time.perf_counter() - t) * 1000)
                before = descendants_cpu_s(os.getpid())
                t = time.perf_counter()
                await access.raw_get(p.url, small)
                preview.append((time.perf_counter() - t) * 1000)
                cpu += descendants_cpu_s(os.getpid()) - before
            print(json.dumps({"direct": direct, "preview": preview, "cpu_s": cpu}), flush=True)
        elif cmd == "download":
            t = time.perf_counter()
            got = await access.direct(netns, access.REQUEST.replace(b"/small", b"/big"))
            direct_mbs = got / (1 << 20) / (time.perf_counter() - t)
            t = time.perf_counter()
            got = await access.raw_get(p.url, big)
            preview_mbs = got / (1 << 20) / (time.perf_counter() - t)
            print(json.dumps({"direct": direct_mbs, "preview": preview_mbs}), flush=True)
        elif cmd == "quit":
            break
    await p.api.delete(f"/v1/instances/{iid}")


class Side:
    def __init__(self, name: str, src: Path, mb: int) -> None:
        self.name = name
        env = {**os.environ, "PYTHONPATH": str(src)}
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", "--mb", str(mb)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        self.direct: list[float] = []
        self.preview: list[float] = []
        self.cpu_s = 0.0
        self.mbs: list[tuple[float, float]] = []

    def ask(self, cmd: str | None) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if cmd is not None:
            self.proc.stdin.write(cmd + "\n")
            self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name} worker died")
        answer: dict[str, Any] = json.loads(line)
        return answer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--base", type=Path)
    ap.add_argument("--head", type=Path, default=HERE.parent / "src")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--downloads", type=int, default=3)
    ap.add_argument("--mb", type=int, default=200)
    args = ap.parse_args()
    if args.worker:
        asyncio.run(worker(args.mb))
        return
    if args.base is None:
        ap.error("--base is required")
    sides = [Side("base", args.base, args.mb), Side("head", args.head, args.mb)]
    try:
        for side in sides:
            side.ask(None)  # ready
        for i in range(args.rounds):
            for side in sides if i % 2 == 0 else reversed(sides):
                got = side.ask("round")
                side.direct += got["direct"]
                side.preview += got["preview"]
                side.cpu_s += got["cpu_s"]
        for i in range(args.downloads):
            for side in sides if i % 2 == 0 else reversed(sides):
                got = side.ask("download")
                side.mbs.append((got["direct"], got["preview"]))
    finally:
        for side in sides:
            assert side.proc.stdin is not None
            side.proc.stdin.write("quit\n")
            side.proc.stdin.flush()
        for side in sides:
            side.proc.wait(timeout=120)
    n = args.rounds * PER_ROUND
    print(f"\nGET of a 2 KiB file, {n} requests each way per side, sides and ways alternated (ms)")
    added = {}
    for side in sides:
        d, pv = statistics.median(side.direct), statistics.median(side.preview)
        added[side.name] = pv - d
        direct_mbs = statistics.median(m[0] for m in side.mbs)
        preview_mbs = statistics.median(m[1] for m in side.mbs)
        print(f"  {side.name}: direct p50 {d:5.2f}  preview p50 {pv:5.2f}  "
              f"(+{pv - d:.2f} ms, {pv / d:.2f}x)  API+node CPU {side.cpu_s / n * 1000:.2f} ms/request;"
              f"  download direct {direct_mbs:.0f} MB/s, preview {preview_mbs:.0f} MB/s "
              f"({preview_mbs / direct_mbs:.2f} of direct)")  # fmt: skip
    base, head = sides
    print(f"  head/base: added ms {added['head'] / added['base']:.2f}x, "
          f"CPU per request {head.cpu_s / base.cpu_s:.2f}x")  # fmt: skip
    print(f"(machine: {Path('/proc/loadavg').read_text().split()[0]} load average at the end)")


if __name__ == "__main__":
    main()
