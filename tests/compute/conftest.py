"""A whole platform per test: the API (with its worker) served over real HTTP, and a real
compute node process-equivalent registered with it, running the sandbox driver."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from forkyard.config import Settings
from forkyard.node.drivers.sandbox import SandboxDriver
from forkyard.node.runner import Node, NodeConfig
from forkyard.runtime import node_command
from tests.helpers import last_link, login, make_api_key, signup

NODE_TOKEN = "test-node-token-0123456789"
CONTROLLERS = ("memory", "pids", "cpu", "cpuacct", "freezer")
IMAGE_CACHE = Path(os.environ.get("FORKYARD_IMAGE_CACHE", "/var/cache/forkyard/images"))

pytestmark = pytest.mark.sandbox


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def compute_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"run_worker_in_api": True, "node_token": NODE_TOKEN})


@pytest.fixture
async def control_plane(compute_settings: Settings, db: Any) -> AsyncIterator[str]:
    from forkyard.app import create_app

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    settings = compute_settings.model_copy(update={"public_url": url})
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, db=db),
            host="127.0.0.1",
            port=port,
            log_config=None,
            access_log=False,
            server_header=False,  # as `forkyard serve` runs it
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    yield url
    server.should_exit = True
    await task


@dataclass
class Platform:
    url: str
    node: Node
    api: httpx.AsyncClient  # authenticated with an API key of a verified user's org
    browser: httpx.AsyncClient  # the same user's cookie session
    org_id: str


async def start_node(
    control_plane: str, data_dir: Path, name: str | None = None
) -> tuple[Node, asyncio.Task[None]]:
    """`name`: the same name and data dir make a restarted node the same server."""
    node = Node(
        NodeConfig(
            control_plane=control_plane,
            token=NODE_TOKEN,
            data_dir=data_dir,
            name=name or f"test-{uuid.uuid4().hex[:8]}",
            image_cache=IMAGE_CACHE,
            cgroup_parent=f"forkyard-t{os.getpid()}-{uuid.uuid4().hex[:6]}",
        )
    )
    ready = asyncio.Event()
    task = asyncio.create_task(node.run(ready))
    waiter = asyncio.create_task(ready.wait())
    done, _ = await asyncio.wait({task, waiter}, timeout=600, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()
    assert ready.is_set(), "node did not register"
    return node, task


async def stop_node(node: Node, task: asyncio.Task[None]) -> None:
    assert node.driver is not None
    node.stop()  # no new work arrives once the node API has shut down
    await task
    await remove_node_leftovers(node.driver)


async def remove_node_leftovers(driver: SandboxDriver) -> None:
    """Everything a stopped (or killed) node left on this machine: its instances' processes,
    mounts and files, its layer store and its cgroup parent."""
    for instance_id in driver.list_owned():
        await driver.destroy(instance_id)
    driver.release_store()
    for c in CONTROLLERS:
        p = Path("/sys/fs/cgroup") / c / driver.cgroup_parent
        if p.is_dir():
            p.rmdir()


class NodeProcess:
    def __init__(self, control_plane: str, data_dir: Path, name: str, cgroup_parent: str) -> None:
        self.args = node_command(control_plane, data_dir, name, cgroup_parent)
        self.data_dir = data_dir
        self.cgroup_parent = cgroup_parent
        self.log = data_dir.parent / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "FORKYARD_NODE_TOKEN": NODE_TOKEN,
            "FORKYARD_IMAGE_CACHE_DIR": str(IMAGE_CACHE),
        }
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.args, env=env, stdout=log, stderr=log)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
async def node_process(control_plane: str, tmp_path: Path) -> AsyncIterator[NodeProcess]:
    """A `forkyard node` subprocess registered with the control plane (start() it; it can be
    killed with SIGKILL); what it leaves behind is removed afterwards."""
    data_dir = tmp_path / "node-proc"
    data_dir.mkdir()
    cg = f"forkyard-t{os.getpid()}-{uuid.uuid4().hex[:6]}"
    node = NodeProcess(control_plane, data_dir, f"proc-{uuid.uuid4().hex[:6]}", cg)
    yield node
    node.stop()
    await remove_node_leftovers(SandboxDriver(data_dir, cgroup_parent=cg))


async def make_account_login(browser: httpx.AsyncClient, email: str) -> Any:
    body = await login(browser, email)

    class Account:
        org_id = body["user"]["personal_org_id"]

    return Account


async def signed_in(
    url: str, email: str, compute_settings: Settings, run_jobs: Any
) -> tuple[httpx.AsyncClient, httpx.AsyncClient, str]:
    browser = httpx.AsyncClient(base_url=url, headers={"Origin": url}, timeout=60)
    await signup(browser, email)
    for _ in range(200):  # the platform's own worker sends the verification email
        try:
            token = last_link(compute_settings, email)
            break
        except AssertionError:
            await asyncio.sleep(0.02)
    assert (await browser.get("/v1/auth/verify-email", params={"token": token})).status_code == 200
    account = await make_account_login(browser, email)
    key = await make_api_key(browser)
    api = httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120)
    return api, browser, account.org_id


@pytest.fixture
async def platform(
    control_plane: str, compute_settings: Settings, run_jobs: Any, tmp_path: Path
) -> AsyncIterator[Platform]:
    node, task = await start_node(control_plane, tmp_path / "node")
    api, browser, org_id = await signed_in(
        control_plane, "owner@example.com", compute_settings, run_jobs
    )
    yield Platform(control_plane, node, api, browser, org_id)
    await api.aclose()
    await browser.aclose()
    await stop_node(node, task)


async def wait_status(
    api: httpx.AsyncClient, instance_id: str, status: str, timeout: float = 30
) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        r = await api.get(f"/v1/instances/{instance_id}")
        if r.status_code == 404 and status == "gone":
            return {}
        body: dict[str, Any] = r.json()
        if body.get("status") == status:
            return body
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(
                f"{instance_id} stuck at {body.get('status')} ({body.get('status_reason')}), wanted {status}"
            )
        await asyncio.sleep(0.02)


async def create_running(api: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    body.setdefault("memory_mb", 256)
    body.setdefault("disk_mb", 256)
    r = await api.post("/v1/instances", json=body)
    assert r.status_code == 202, r.text
    return await wait_status(api, r.json()["id"], "running")


@pytest.fixture
async def second_node(platform: Platform, tmp_path: Path) -> AsyncIterator[Node]:
    """Another in-process node registered with the same control plane (its own data dir, layer
    store and cgroup parent): the platform is then a two-server cluster."""
    node, task = await start_node(platform.url, tmp_path / "node-b")
    yield node
    await stop_node(node, task)
