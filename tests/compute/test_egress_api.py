"""Egress policies through the API: `network` on create, profiles and PATCH (applied live), and
under "open" neither the control plane's port nor the node's answers (ADR 0015)."""

from __future__ import annotations

import subprocess
from typing import Any
from urllib.parse import urlsplit

import pytest

from forkyard.config import Settings
from tests.compute.conftest import NODE_TOKEN, create_running
from tests.egress_net import BLOCKED, PORT, PROBE, bench_net_fixture  # noqa: F401 (a fixture)

pytestmark = pytest.mark.sandbox


@pytest.fixture
def compute_settings(settings: Settings) -> Settings:
    # The test's servers live in 198.18.0.0/15: public for this test only.
    return settings.model_copy(
        update={
            "run_worker_in_api": True,
            "node_token": NODE_TOKEN,
            "egress_blocked_ranges": list(BLOCKED),
        }
    )


async def probe(api: Any, iid: str, *targets: str) -> list[str]:
    r = await api.post(
        f"/v1/instances/{iid}/exec",
        json={"command": ["python3", "-c", PROBE, *targets], "timeout_s": 60},
    )
    assert r.status_code == 200, r.text
    out = r.json()["stdout"]
    return [line.split()[0] for line in out.splitlines()]


def host_addresses() -> list[str]:
    out = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    return [line.split()[3].split("/")[0] for line in out.splitlines()]


async def test_network_policy_from_create_to_patch(platform, bench_net):
    api = platform.api
    allowed, other = f"{bench_net.allowed}:{PORT}", f"{bench_net.other}:{PORT}"
    bad = await api.post("/v1/instances", json={"network": {"egress": "open", "allow": ["a b"]}})
    assert bad.status_code == 422

    # A profile's policy is what its instances get unless they ask otherwise.
    r = await api.post(
        "/v1/profiles",
        json={"name": "net", "network": {"egress": "allowlist", "allow": [bench_net.allowed]}},
    )
    assert r.status_code == 201, r.text
    assert r.json()["network"] == {"egress": "allowlist", "allow": [bench_net.allowed]}
    inst = await create_running(api, profile_id=r.json()["id"])
    iid = inst["id"]
    assert inst["network"] == {"egress": "allowlist", "allow": [bench_net.allowed]}
    for _ in range(50):
        if await probe(api, iid, allowed) == ["open"]:
            break
    assert await probe(api, iid, allowed, other) == ["open", "closed"]

    # Live: open. Still nothing of the control plane's nor the node's, on any host address.
    r = await api.patch(f"/v1/instances/{iid}", json={"network": {"egress": "open"}})
    assert r.status_code == 200, r.text
    assert r.json()["network"] == {"egress": "open", "allow": []}
    ports = [
        urlsplit(platform.url).port,
        urlsplit(platform.node.url).port,
        platform.node.relay_port,
    ]
    host = [f"{a}:{p}" for a in host_addresses() for p in ports]
    assert await probe(api, iid, other, *host) == ["open"] + ["closed"] * len(host)

    # Live: none. The loopback only, and it stays so after a restart.
    r = await api.patch(f"/v1/instances/{iid}", json={"network": {"egress": "none"}})
    assert r.status_code == 200, r.text
    assert await probe(api, iid, allowed) == ["closed"]
    instance = (await api.get(f"/v1/instances/{iid}")).json()
    assert instance["network"]["egress"] == "none"
    assert (await api.delete(f"/v1/instances/{iid}")).status_code == 202

    # Without a network on create or profile: FORKYARD_DEFAULT_EGRESS ("none").
    r = await api.post("/v1/instances", json={"memory_mb": 256, "disk_mb": 256})
    assert r.json()["network"] == {"egress": "none", "allow": []}
    assert (await api.delete(f"/v1/instances/{r.json()['id']}")).status_code == 202
