"""Abuse of shared resources, through the public API: bodies too large for any route, reads of
things that never end, a tenant's large write beside another tenant's exec, the node's memory,
and the org's disk total."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from forkyard.config import Settings
from tests.compute.conftest import (
    NODE_TOKEN,
    NodeProcess,
    Platform,
    create_running,
    signed_in,
    wait_status,
)
from tests.compute.test_reconcile import create_when_ready
from tests.helpers import error_code

MIB = 1024 * 1024


@pytest.fixture
def compute_limits() -> dict[str, Any]:
    """Settings overrides; a test parametrizes this."""
    return {}


@pytest.fixture
def compute_settings(settings: Settings, compute_limits: dict[str, Any]) -> Settings:
    return settings.model_copy(
        update={
            "run_worker_in_api": True,
            "node_token": NODE_TOKEN,
            "max_disk_mb_per_org": 1024,
            "max_disk_mb_per_instance": 768,
            **compute_limits,
        }
    )


# --- request bodies ---


async def _raw_request(
    url: str, head: str, body_chunks: int = 0, chunked: bool = False
) -> tuple[int, dict[str, Any], int, float]:
    """Send a request by hand: its head, then (chunked) up to `body_chunks` MiB until the
    server answers. Return the status, the JSON body, the body bytes the server let in before
    it answered, and the seconds it took."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    started = time.monotonic()
    writer.write(head.encode())
    await writer.drain()

    async def read_answer() -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        return head + await reader.readexactly(length)

    answer = asyncio.create_task(read_answer())
    sent = 0
    chunk = b"x" * MIB
    try:
        for _ in range(body_chunks):
            if answer.done():
                break
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            await writer.drain()
            sent += len(chunk)
    except (ConnectionError, OSError):
        pass  # the server answered and hung up on the rest: what we want
    raw = await asyncio.wait_for(answer, 30)
    elapsed = time.monotonic() - started
    writer.close()
    head_text, _, payload = raw.partition(b"\r\n\r\n")
    status = int(head_text.split(b" ", 2)[1])
    return status, json.loads(payload), sent, elapsed


async def test_an_oversized_body_is_refused_before_it_is_read(control_plane: str):
    host = urlsplit(control_plane).netloc
    routes = [
        ("POST", "/v1/auth/login", 10 * MIB),  # public
        ("POST", "/v1/instances", 10 * MIB),  # authenticated
        ("POST", "/v1/instances/inst_01jnosuchinstance00000000/files", 64 * MIB),  # upload
        ("PUT", "/v1/no-such-route", 10 * MIB),
    ]
    for method, path, limit in routes:
        # Declared: answered from the headers alone, without a byte of the 100 MB.
        status, body, _, elapsed = await _raw_request(
            control_plane,
            f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            "Content-Length: 100000000\r\n\r\n",
        )
        assert status == 413, (path, body)
        assert body["error"]["code"] == "payload_too_large"
        assert body["error"]["details"] == {"max_bytes": limit}
        assert body["error"]["request_id"].startswith("req_")
        assert elapsed < 2, (path, elapsed)

    # Chunked, with no length: counted as it is read, refused once past the limit. The server
    # stops reading there: the bytes it let in are the limit plus what socket buffers hold.
    for path, limit, extra in [
        ("/v1/instances", 10 * MIB, ""),
        ("/v1/instances", 10 * MIB, "Idempotency-Key: k-1\r\n"),  # a middleware that buffers
        ("/v1/instances/inst_01jnosuchinstance00000000/files", 64 * MIB, ""),
    ]:
        for attempt in range(3):
            try:
                status, body, sent, _ = await _raw_request(
                    control_plane,
                    f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                    f"{extra}Transfer-Encoding: chunked\r\n\r\n",
                    body_chunks=100,
                    chunked=True,
                )
                break
            except ConnectionResetError:
                # The server answered and closed with our unread chunks in its buffer: its
                # kernel resets the connection, which can discard the answer before we read
                # it (TCP, not the server). Another try reads it; three resets in a row fail.
                if attempt == 2:
                    raise
        assert status == 413 and body["error"]["code"] == "payload_too_large", (path, body)
        assert sent < limit + 16 * MIB, (path, sent)

    # Bodies under the limit are served as before.
    async with httpx.AsyncClient(base_url=control_plane) as c:
        r = await c.post("/v1/auth/login", json={"email": "a@example.com", "password": "x" * 12})
        assert r.status_code == 401, r.text


# --- reads that never end, and bounded reads ---


async def test_devices_fifos_and_huge_files_are_answered_at_once(platform: Platform):
    api = platform.api
    iid = (await create_running(api))["id"]
    r = await api.post(
        f"/v1/instances/{iid}/exec",
        json={"command": "mkfifo /root/pipe && head -c 3000000 /dev/urandom > /root/big"},
    )
    assert r.json()["exit_code"] == 0, r.text
    for path in ("/dev/zero", "/root/pipe", "/dev/urandom"):
        started = time.monotonic()
        r = await api.get(f"/v1/instances/{iid}/files", params={"path": path})
        assert time.monotonic() - started < 5, path
        assert r.status_code == 400 and error_code(r) == "not_a_regular_file", (path, r.text)
        assert "/forkyard" not in r.text  # nothing of the host's paths
    # an edit of a FIFO is refused the same way, and does not hang either
    r = await api.post(
        f"/v1/instances/{iid}/files/edit",
        json={"path": "/root/pipe", "old_str": "a", "new_str": ""},
    )
    assert r.status_code == 400 and error_code(r) == "not_a_regular_file", r.text

    # /proc files (no size the kernel admits) read fine, and bounded
    r = await api.get(f"/v1/instances/{iid}/files", params={"path": "/proc/self/status"})
    assert r.status_code == 200 and b"VmRSS" in r.content

    # a file within the read limit is streamed whole; it matches what the instance holds
    digest = (
        (await api.post(f"/v1/instances/{iid}/exec", json={"command": "sha256sum /root/big"}))
        .json()["stdout"]
        .split()[0]
    )
    r = await api.get(f"/v1/instances/{iid}/files", params={"path": "/root/big"})
    assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == digest
    assert len(r.content) == 3_000_000


@pytest.mark.parametrize("compute_limits", [{"file_read_max_bytes": MIB}])
async def test_a_file_over_the_read_limit_is_read_in_ranges(platform: Platform):
    api = platform.api
    iid = (await create_running(api))["id"]
    content = bytes(range(256)) * 12000  # 3 072 000 bytes
    r = await api.post(
        f"/v1/instances/{iid}/files",
        json={
            "path": "/root/f",
            "content": base64.b64encode(content).decode(),
            "encoding": "base64",
        },
    )
    assert r.status_code == 200 and r.json()["size"] == len(content), r.text
    r = await api.get(f"/v1/instances/{iid}/files", params={"path": "/root/f"})
    assert r.status_code == 400 and error_code(r) == "file_too_large", r.text
    assert r.json()["error"]["details"]["max_bytes"] == MIB
    r = await api.get(f"/v1/instances/{iid}/files", params={"path": "/root/f", "limit": MIB + 1})
    assert r.status_code == 400 and error_code(r) == "file_too_large"
    got = bytearray()
    while len(got) < len(content):
        r = await api.get(
            f"/v1/instances/{iid}/files",
            params={"path": "/root/f", "offset": len(got), "limit": MIB},
        )
        assert r.status_code == 200 and 0 < len(r.content) <= MIB
        got += r.content
    assert bytes(got) == content
    # a read of /dev/zero with a range is still refused: it is not a file
    r = await api.get(f"/v1/instances/{iid}/files", params={"path": "/dev/zero", "limit": 10})
    assert error_code(r) == "not_a_regular_file"


# --- one tenant's large work beside another's, on a node whose memory is measured ---


def _rss_kib(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


async def test_a_large_write_beside_another_orgs_exec_and_the_node_stays_bounded(
    node_process: NodeProcess, control_plane: str, compute_settings: Settings, run_jobs: Any
):
    big, _, _ = await signed_in(control_plane, "big@example.com", compute_settings, run_jobs)
    other, _, _ = await signed_in(control_plane, "other@example.com", compute_settings, run_jobs)
    node_process.start()
    assert node_process.proc is not None
    pid = node_process.proc.pid
    mine = await create_when_ready(big)
    theirs = await create_when_ready(other)
    # Warm both paths (imports, first allocations), then measure.
    await big.post(
        f"/v1/instances/{mine}/files", json={"path": "/root/w", "content": "x" * 5 * MIB}
    )
    await big.get(f"/v1/instances/{mine}/files", params={"path": "/root/w"})
    await other.post(f"/v1/instances/{theirs}/exec", json={"command": "true"})
    before = _rss_kib(pid)

    async def their_exec() -> tuple[dict[str, Any], float]:
        started = time.monotonic()
        r = await other.post(
            f"/v1/instances/{theirs}/exec",
            json={"command": "for i in $(seq 20); do echo $i; sleep 0.1; done"},
        )
        assert r.status_code == 200, r.text
        return r.json(), time.monotonic() - started

    async def my_abuse() -> None:
        content = bytes(range(256)) * (50_000_000 // 256)  # 50 MB
        r = await big.post(
            f"/v1/instances/{mine}/files",
            json={
                "path": "/root/fifty",
                "content": base64.b64encode(content).decode(),
                "encoding": "base64",
            },
        )
        assert r.status_code == 200 and r.json()["size"] == len(content), r.text
        r = await big.get(f"/v1/instances/{mine}/files", params={"path": "/dev/zero"})
        assert error_code(r) == "not_a_regular_file"
        r = await big.get(f"/v1/instances/{mine}/files", params={"path": "/root/fifty"})
        assert r.status_code == 200 and r.content == content
        # output far past the cap: the answer is the cap, and marked truncated
        r = await big.post(
            f"/v1/instances/{mine}/exec", json={"command": "head -c 200000000 /dev/zero"}
        )
        out = r.json()
        assert out["truncated"] and len(base64.b64decode(out["stdout"])) <= MIB, out["encoding"]

    (result, took), _ = await asyncio.gather(their_exec(), my_abuse())
    after = _rss_kib(pid)
    print(f"node RSS before {before} after {after} (KiB); the other org's exec took {took:.2f}s")
    assert result["exit_code"] == 0 and took < 15
    assert result["stdout"].split() == [str(i) for i in range(1, 21)]
    # The node never held the 50 MB file, its read, or the 200 MB of output: its peak grows
    # by a fraction of them.
    assert after["VmHWM"] - before["VmHWM"] < 40 * 1024, (before, after)
    assert after["VmRSS"] - before["VmRSS"] < 40 * 1024, (before, after)


# --- the org's disk total ---


async def test_disk_is_limited_per_instance_and_per_org(platform: Platform):
    api = platform.api
    r = await api.post("/v1/instances", json={"memory_mb": 256, "disk_mb": 1000})
    assert r.status_code == 403 and error_code(r) == "quota_exceeded", r.text
    assert r.json()["error"]["details"]["limit"] == "max_disk_mb_per_instance"
    assert (await api.get("/v1/instances")).json()["data"] == []

    a = await create_running(api, disk_mb=512)
    b = await create_running(api, disk_mb=512)
    r = await api.post("/v1/instances", json={"memory_mb": 256, "disk_mb": 64})
    assert r.status_code == 403
    details = r.json()["error"]["details"]
    assert details == {"limit": "max_disk_mb", "max": 1024, "in_use": 1024, "requested": 64}
    # checkpoints, snapshots, forks and image builds count against the same total
    r = await api.post(f"/v1/instances/{a['id']}/checkpoints", json={"name": "c"})
    assert r.status_code == 403 and r.json()["error"]["details"]["limit"] == "max_disk_mb"
    r = await api.post(f"/v1/instances/{a['id']}/snapshots", json={"name": "s"})
    assert r.status_code == 403 and r.json()["error"]["details"]["limit"] == "max_disk_mb"
    r = await api.post(f"/v1/instances/{a['id']}/fork", json={"count": 1})
    assert r.status_code == 403 and r.json()["error"]["details"]["limit"] == "max_disk_mb"
    r = await api.post(
        "/v1/images/prepare", json={"family": "tools", "base_image": "default", "disk_mb": 256}
    )
    assert r.status_code == 403 and r.json()["error"]["details"]["limit"] == "max_disk_mb"
    assert (await api.get(f"/v1/instances/{a['id']}/checkpoints")).json()["data"] == []

    # a deleted instance frees its disk; a checkpoint then counts what it holds
    await api.delete(f"/v1/instances/{b['id']}")
    await wait_status(api, b["id"], "gone")
    r = await api.post(f"/v1/instances/{a['id']}/checkpoints", json={"name": "c"})
    assert r.status_code == 201, r.text
