"""Lifecycle: how long a `kill -9` of the local node keeps its instances from answering exec.

    .venv/bin/python bench/lifecycle.py [--instances 10] [--rounds 3]

Runs `forkyard serve` as its own process (embedded PostgreSQL in a temp data dir, or
FORKYARD_TEST_DATABASE_URL's server with a fresh database), creates N instances, then per round
SIGKILLs the node and times until serve's supervisor has started it again and every instance
answers `exec true`. Finally SIGTERMs serve and reports how long it took and whether anything of
the installation (process, mount, loop device, cgroup) is left. Needs root.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from forkyard.node.installation import installation_id, lock_holder

FORKYARD = [sys.executable, "-m", "forkyard.cli"]
PASSWORD = "bench-password-Long-enough-1"
CACHE = os.environ.get("FORKYARD_IMAGE_CACHE", "/var/cache/forkyard/images")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_exec(api: httpx.Client, iid: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while api.post(f"/v1/instances/{iid}/exec", json={"command": "true"}).status_code != 200:
        if time.monotonic() > deadline:
            raise SystemExit(f"{iid} never answered exec")
        time.sleep(0.05)


def node_pid(node_dir: Path) -> int:
    holder = lock_holder(node_dir)
    assert holder and holder.get("pid"), "no node holds the data dir"
    return int(holder["pid"])


def leftovers(data_dir: Path) -> list[str]:
    root = str(data_dir.resolve())
    found = [
        f"mount {line.split()[4]}"
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if line.split()[4].startswith(root + "/")
    ]
    found += [
        f"loop {b.parent.parent.name}"
        for b in Path("/sys/block").glob("loop*/loop/backing_file")
        if b.read_text().strip().startswith(root + "/")
    ]
    prefix = f"forkyard-{installation_id(data_dir / 'node')}"
    found += [f"cgroup {c}" for c in Path("/sys/fs/cgroup").glob(f"*/{prefix}")]
    return found


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="forkyard-bench-lifecycle-"))
    data = work / "data"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORKYARD_")}
    env.update(FORKYARD_LOG_JSON="false", FORKYARD_PUBLIC_URL=url, FORKYARD_IMAGE_CACHE_DIR=CACHE)
    log = open(work / "serve.log", "ab")  # noqa: SIM115
    serve = subprocess.Popen(
        [*FORKYARD, "serve", "--port", str(port), "--data-dir", str(data)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        while True:
            try:
                if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        subprocess.run(
            [*FORKYARD, "admin", "create-user", "--email", "b@example.com", "--password",
             PASSWORD, "--data-dir", str(data)],
            env=env, check=True, capture_output=True,
        )  # fmt: skip
        with httpx.Client(base_url=url, headers={"Origin": url}, timeout=30) as c:
            c.post("/v1/auth/login", json={"email": "b@example.com", "password": PASSWORD})
            key = c.post("/v1/api-keys", json={"name": "bench"}).json()["key"]
        api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120)
        iids = []
        while len(iids) < args.instances:
            r = api.post("/v1/instances", json={"memory_mb": 128, "disk_mb": 256})
            if r.status_code == 503:  # the node has not registered yet
                time.sleep(0.2)
                continue
            iids.append(r.json()["id"])
        for iid in iids:
            wait_exec(api, iid)
        print(f"lifecycle: {args.instances} instances on the local node of `forkyard serve`")
        took = []
        for n in range(args.rounds):
            before = node_pid(data / "node")
            os.kill(before, signal.SIGKILL)
            t0 = time.monotonic()
            for iid in iids:
                wait_exec(api, iid)
            took.append(time.monotonic() - t0)
            print(
                f"round {n + 1}: node kill -9 (pid {before}) to exec in all: {took[-1]:.2f} s "
                f"(new node pid {node_pid(data / 'node')})"
            )
        print(f"node death to exec again: median {statistics.median(took):.2f} s")
        t0 = time.monotonic()
        serve.send_signal(signal.SIGTERM)
        code = serve.wait(timeout=300)
        print(
            f"serve SIGTERM to exit with {args.instances} instances: {time.monotonic() - t0:.2f} s "
            f"(exit {code}); left on the host: {leftovers(data) or 'nothing'}"
        )
    finally:
        if serve.poll() is None:
            serve.send_signal(signal.SIGTERM)
            serve.wait(timeout=300)
        log.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
