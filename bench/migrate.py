"""Layer migration between two nodes on this machine: the time to copy a checkpoint layer from
one node's store to another's, as the control plane does before booting an instance on a server
that lacks the layer (it asks the source for an export ticket, then the target to import: the
target pulls the sparse disk image over HTTP, checks its SHA-256 and renames it into place).

    .venv/bin/python bench/migrate.py [--sizes 10,100,500] [--repeat 3]

Each node is its own process (the node API over a sandbox driver with its own data dir and
layer store); this process plays the control plane. Needs root. Baselines in the same run:
`cp --sparse=always` of the same disk image between the two stores (+ sync), and the export
stream alone, drained by this process. Both nodes share this machine's 2 cores and one disk.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from harness import ms

from forkyard.compute.node_client import NodeRpc

CONTROLLERS = ("memory", "pids", "cpu", "cpuacct", "freezer")
FILES_HASH = "find /root/d -type f | sort | xargs sha256sum"


# --- a node process: `bench/migrate.py --serve DATA_DIR SECRET PORT_FILE` ---


async def serve_node(data_dir: Path, secret: str, port_file: Path) -> None:
    import uvicorn

    from forkyard.node.drivers.sandbox import SandboxDriver
    from forkyard.node.images import ensure_default_image
    from forkyard.node.server import create_node_app

    cache = Path(os.environ.get("FORKYARD_IMAGE_CACHE", "/var/cache/forkyard/images"))
    image = ensure_default_image(cache, cache_dir=cache)
    cg = f"forkyard-bench-{os.getpid()}"
    driver = SandboxDriver(data_dir, cgroup_parent=cg, store_mb=16384)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(
            create_node_app(driver, secret, {"default": image}),
            log_config=None,
            access_log=False,
            lifespan="off",
        )
    )
    asyncio.get_running_loop().add_signal_handler(
        signal.SIGTERM, lambda: setattr(server, "should_exit", True)
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    port_file.write_text(f"{sock.getsockname()[1]} {driver.storage_mode()}")
    await task
    for iid in driver.list_owned():
        await driver.destroy(iid)
    await driver.close()
    driver.release_store()
    for c in CONTROLLERS:
        p = Path("/sys/fs/cgroup") / c / cg
        if p.is_dir():
            p.rmdir()


class NodeProc:
    def __init__(self, root: Path, name: str) -> None:
        self.data_dir = root / name
        self.secret = uuid.uuid4().hex
        port_file = root / f"{name}.port"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--serve",
                str(self.data_dir),
                self.secret,
                str(port_file),
            ]
        )
        deadline = time.monotonic() + 300
        while not port_file.exists() or not port_file.read_text():
            assert self.proc.poll() is None and time.monotonic() < deadline, "node failed"
            time.sleep(0.05)
        port, self.mode = port_file.read_text().split()
        self.url = f"http://127.0.0.1:{port}"
        self.http = httpx.AsyncClient(
            base_url=self.url, headers={"Authorization": f"Bearer {self.secret}"}, timeout=600
        )
        self.rpc = NodeRpc(self.url, self.secret)

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        r = await self.http.request(method, path, json=body)
        assert r.status_code < 400, r.text
        return r.json()

    async def exec(self, instance_id: str, command: str) -> Any:
        """A command run to completion, over the node's call channel as the API does."""
        return await self.rpc.call(
            "exec", instance_id, {"command": command, "timeout_s": 600}, timeout=660
        )

    async def stop(self) -> None:
        await self.rpc.close()
        await self.http.aclose()
        self.proc.terminate()
        self.proc.wait(timeout=120)


def spec(disk_mb: int) -> dict[str, Any]:
    return {"image": "default", "vcpus": 1, "memory_mb": 256, "disk_mb": disk_mb, "env": {}}


async def bench(a: NodeProc, b: NodeProc, sizes: list[int], repeat: int) -> None:
    print(
        f"{'data':>6} {'image':>8} | {'migrate':>9} {'MB/s':>6} {'(min)':>8} | "
        f"{'again':>7} | {'export only':>11} | {'cp+sync':>8}"
    )
    for mb in sizes:
        src = f"b-{uuid.uuid4().hex[:10]}"
        await a.call("PUT", f"/node/instances/{src}", spec(max(1024, mb * 2)))
        n = max(1, mb // 10)
        write = (
            f"mkdir -p /root/d && for i in $(seq {n}); do "
            f"head -c {mb * 2**20 // n} /dev/urandom > /root/d/f$i; done && {FILES_HASH}"
        )
        r = await a.exec(src, write)
        assert r["exit_code"] == 0, r
        files = r["stdout_b64"]
        times, agains, exports, cps = [], [], [], []
        image_bytes = 0
        for i in range(repeat):
            layer_id = f"lyr-bench-{uuid.uuid4().hex[:8]}"
            info = await a.call("POST", f"/node/instances/{src}/checkpoint", {"layer_id": layer_id})
            os.sync()
            disk = Path(info["path"]) / "disk.img"
            image_bytes = disk.stat().st_blocks * 512
            # the export alone, drained here
            t0 = time.monotonic()
            ticket = await a.call("POST", f"/node/layers/{layer_id}/export-ticket")
            async with (
                httpx.AsyncClient(timeout=600) as c,
                c.stream(
                    "GET",
                    f"{a.url}/node/layers/{layer_id}/export",
                    headers={"X-Forkyard-Layer-Ticket": ticket["ticket"]},
                ) as resp,
            ):
                async for _ in resp.aiter_raw(4 * 2**20):
                    pass
            exports.append(ms(t0))
            # the migration, as the control plane runs it
            t0 = time.monotonic()
            ticket = await a.call("POST", f"/node/layers/{layer_id}/export-ticket")
            body = {"source_url": a.url, "ticket": ticket["ticket"], "image": "default"}
            out = await b.call("POST", f"/node/layers/{layer_id}/import", body)
            times.append(ms(t0))
            assert out["imported"] is True
            t0 = time.monotonic()
            out = await b.call("POST", f"/node/layers/{layer_id}/import", body)
            agains.append(ms(t0))
            assert out["imported"] is False
            # baseline: a sparse byte copy between the two stores
            dst = b.data_dir / "store" / f"cp-{layer_id}.img"
            t0 = time.monotonic()
            subprocess.run(
                ["cp", "--sparse=always", "--reflink=never", str(disk), str(dst)], check=True
            )
            os.sync()
            cps.append(ms(t0))
            dst.unlink()
            if i == 0:  # an instance booted on B from the copy has the same files
                child = f"b-{uuid.uuid4().hex[:10]}"
                await b.call(
                    "PUT", f"/node/instances/{child}", {**spec(1024), "from_layer": layer_id}
                )
                r = await b.exec(child, FILES_HASH)
                assert r["stdout_b64"] == files, "the copy differs"
                await b.call("DELETE", f"/node/instances/{child}")
            await b.call("DELETE", f"/node/layers/{layer_id}")
            await a.call("DELETE", f"/node/layers/{layer_id}")
        med = statistics.median(times)
        print(
            f"{mb:>4}MB {image_bytes / 2**20:>6.0f}MB | {med:>7.0f}ms "
            f"{image_bytes / 2**20 / (med / 1000):>6.0f} {min(times):>6.0f}ms | "
            f"{statistics.median(agains):>5.1f}ms | {statistics.median(exports):>9.0f}ms | "
            f"{statistics.median(cps):>6.0f}ms"
        )
        await a.call("DELETE", f"/node/instances/{src}")
    print(f"(`image`: allocated bytes of the layer's disk image; {hashlib.sha256().name} checked)")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10,100,500")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--serve", nargs=3, metavar=("DATA_DIR", "SECRET", "PORT_FILE"))
    args = ap.parse_args()
    if args.serve:
        await serve_node(Path(args.serve[0]), args.serve[1], Path(args.serve[2]))
        return
    root = Path(tempfile.mkdtemp(prefix="forkyard-bench-migrate-"))
    a = b = None
    try:
        a, b = NodeProc(root, "a"), NodeProc(root, "b")
        print(f"storage mode: {a.mode}, {os.cpu_count()} cpus, load {os.getloadavg()}")
        await bench(a, b, [int(x) for x in args.sizes.split(",")], args.repeat)
    finally:
        for node in (a, b):
            if node is not None:
                await node.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
