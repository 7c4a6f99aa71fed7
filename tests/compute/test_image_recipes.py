"""Image recipes that need the Debian mirror: packages on an existing image, and a Debian suite
bootstrapped from scratch (node/images/ downloads; build sandboxes stay offline)."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.compute.conftest import create_running
from tests.compute.state_helpers import node_layers, sh, wait_for
from tests.helpers import error_code


async def _settled(api: Any, image_id: str, timeout: float = 300) -> dict[str, Any]:
    body: dict[str, Any] = {}

    async def done() -> bool:
        nonlocal body
        body = (await api.get(f"/v1/base-images/{image_id}")).json()
        return body["status"] != "building"

    await wait_for(done, timeout=timeout, what=f"build of {image_id}")
    return body


async def _logs_show(api: Any, image_id: str, text: str, timeout: float = 120) -> None:
    async def shown() -> bool:
        return text in ((await api.get(f"/v1/base-images/{image_id}")).json()["logs"] or "")

    await wait_for(shown, timeout=timeout, what=f"{text!r} in the logs of {image_id}")


def _nothing_left(platform: Any) -> bool:
    driver = platform.node.driver
    disks = list(driver.layers.disks_dir.glob("build-*"))
    return not driver.list_owned() and not disks and not node_layers(platform)


async def test_packages_on_the_default_image(platform):
    api = platform.api
    r = await api.post(
        "/v1/images/prepare",
        json={
            "family": "jq",
            "base_image": "default",
            "packages": ["jq", "jq"],
            "commands": ["jq --version > /opt/jq-version"],
        },
    )
    assert r.status_code == 202, r.text
    assert r.json()["recipe"]["packages"] == ["jq"]
    t0 = time.monotonic()
    image = await _settled(api, r.json()["id"])
    print(f"package build: {time.monotonic() - t0:.1f} s")
    assert image["status"] == "ready", image
    assert "Setting up jq" in image["logs"] and "$ jq --version" in image["logs"]
    assert image["progress"] == 100 and image["server_id"]
    assert (await api.post("/v1/images/promote", json={"image_id": image["id"]})).status_code == 200

    inst = await create_running(api, image="jq")
    assert (await sh(api, inst["id"], """echo '{"a": [1, 2]}' | jq -c .a""")).strip() == "[1,2]"
    assert (await sh(api, inst["id"], "cat /opt/jq-version")).startswith("jq-1")
    # the fetched .debs and apt's caches are not part of the image
    left = await sh(api, inst["id"], "ls /var/cache/forkyard-debs /var/cache/apt/*.bin 2>&1; true")
    assert "No such file" in left and ".deb" not in left
    # the sandbox has no network (only the node downloads)
    r = await api.post(
        f"/v1/instances/{inst['id']}/exec",
        json={
            "command": "python3 -c \"import socket; socket.create_connection(('deb.debian.org', 80), 3)\""
        },
    )
    assert r.json()["exit_code"] != 0


async def test_bad_package_names_are_refused_before_anything_is_queued(platform):
    api = platform.api
    for packages in (["Vim"], ["-oAPT::Get::x=1"], ["a"], ["jq curl"], ["jq;reboot"], ["é"]):
        r = await api.post(
            "/v1/images/prepare",
            json={"family": "bad", "base_image": "default", "packages": packages},
        )
        assert r.status_code == 422 and error_code(r) == "validation_failed", (packages, r.text)
    for suite in ("../etc", "Bookworm", "bookworm main", "-x"):
        r = await api.post("/v1/images/prepare", json={"family": "bad", "suite": suite})
        assert r.status_code == 422 and error_code(r) == "validation_failed", (suite, r.text)
    r = await api.post(
        "/v1/images/prepare",
        json={"family": "bad", "suite": "bookworm", "base_image": "default"},
    )
    assert r.status_code == 422
    assert (await api.get("/v1/base-images", params={"family": "bad"})).json()["data"] == []

    # The node takes build steps only for build sandboxes, and checks names itself too.
    node = platform.node
    async with httpx.AsyncClient(
        base_url=node.url, headers={"Authorization": f"Bearer {node.secret}"}
    ) as client:
        r = await client.post("/node/instances/inst-1/packages", json={"packages": ["jq"]})
        assert r.status_code == 422 and r.json()["error"]["code"] == "build_step_failed"
        r = await client.post("/node/instances/build-x/packages", json={"packages": ["-o"]})
        assert r.status_code == 422 and "invalid package names" in r.json()["error"]["message"]
        r = await client.post("/node/instances/build-x/bootstrap", json={"suite": "../../etc"})
        assert r.status_code == 422 and "invalid suite" in r.json()["error"]["message"]
    assert not platform.node.driver.list_owned()


async def test_a_package_the_archive_lacks_fails_the_build_and_leaves_nothing(platform):
    api = platform.api
    r = await api.post(
        "/v1/images/prepare",
        json={"family": "ghost", "base_image": "default", "packages": ["forkyard-no-such-pkg"]},
    )
    image = await _settled(api, r.json()["id"])
    assert image["status"] == "failed", image
    assert "Unable to locate package forkyard-no-such-pkg" in image["logs"]
    assert "apt-get exited" in image["error"]
    assert image["server_id"] is None
    await wait_for(lambda: _nothing_left(platform), timeout=60, what="nothing left")
    r = await api.post("/v1/images/promote", json={"image_id": image["id"]})
    assert r.status_code == 409 and error_code(r) == "image_not_ready"


async def test_abort_stops_a_running_command_and_cleans_up(platform):
    api = platform.api
    r = await api.post(
        "/v1/images/prepare",
        json={
            "family": "slow",
            "base_image": "default",
            "packages": ["jq"],
            "commands": ["sleep 120"],
        },
    )
    image = r.json()
    await _logs_show(api, image["id"], "$ sleep 120")
    t0 = time.monotonic()
    r = await api.post("/v1/images/abort", json={"image_id": image["id"]})
    assert r.status_code == 200 and r.json()["status"] == "aborted"
    await wait_for(lambda: _nothing_left(platform), timeout=60, what="build cleaned up")
    assert time.monotonic() - t0 < 30  # the command was killed, not waited for
    settled = await _settled(api, image["id"])
    assert settled["status"] == "aborted" and settled["server_id"] is None


async def test_suite_build_boots_instances_and_abort_during_debootstrap(platform):
    api = platform.api
    # An abort while debootstrap runs kills it and removes the half-built disk.
    r = await api.post("/v1/images/prepare", json={"family": "deb", "suite": "bookworm"})
    first = r.json()
    await _logs_show(api, first["id"], "I: ")
    r = await api.post("/v1/images/abort", json={"image_id": first["id"]})
    assert r.status_code == 200
    await wait_for(lambda: _nothing_left(platform), timeout=60, what="bootstrap cleaned up")

    # An unknown suite fails with debootstrap's own message.
    r = await api.post("/v1/images/prepare", json={"family": "deb", "suite": "forkyardnosuch"})
    failed = await _settled(api, r.json()["id"])
    assert failed["status"] == "failed", failed
    assert "debootstrap exited" in failed["error"]
    assert "forkyardnosuch" in failed["logs"] and "E: " in failed["logs"]
    # what the build printed reaches the org with the node's directories hidden
    data_dir = str(platform.node.config.data_dir.resolve())
    assert data_dir not in failed["logs"] and data_dir not in failed["error"], failed
    await wait_for(lambda: _nothing_left(platform), timeout=60, what="failed bootstrap cleaned up")

    t0 = time.monotonic()
    r = await api.post(
        "/v1/images/prepare",
        json={
            "family": "deb",
            "suite": "bookworm",
            "packages": ["jq"],
            "commands": ["echo built-from-scratch > /etc/forkyard-recipe"],
        },
    )
    assert r.status_code == 202, r.text
    image = await _settled(api, r.json()["id"], timeout=900)
    took = time.monotonic() - t0
    assert image["status"] == "ready", image
    assert "I: Base system installed successfully." in image["logs"]
    assert image["recipe"]["suite"] == "bookworm" and image["progress"] == 100
    print(f"suite build: {took:.1f} s")
    await api.post("/v1/images/promote", json={"image_id": image["id"]})
    inst = await create_running(api, image="deb")
    iid = inst["id"]
    assert (await sh(api, iid, "cat /etc/forkyard-recipe")).strip() == "built-from-scratch"
    assert (await sh(api, iid, "echo '[3]' | jq '.[0]'")).strip() == "3"
    assert "bookworm" in await sh(api, iid, "cat /etc/os-release")
    # a fresh system, not stacked on the default image (which has git and curl)
    assert (await sh(api, iid, "command -v git curl || echo none")).strip() == "none"
    r = await api.post(
        f"/v1/instances/{iid}/exec", json={"command": "echo hi > /tmp/x && cat /tmp/x"}
    )
    assert r.json()["stdout"] == "hi\n"
