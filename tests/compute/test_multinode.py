"""Two compute servers: placement steered by where layers are, layers copied between nodes
(node to node, verified, atomic), and deleted from every server holding them."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from forkyard.compute.models import Layer
from forkyard.config import Settings
from forkyard.node.layers import TICKET_HEADER
from forkyard.node.runner import Node
from tests.compute.conftest import (
    NodeProcess,
    Platform,
    create_running,
    start_node,
    stop_node,
    wait_status,
)
from tests.compute.state_helpers import fill, sh, tree, wait_for
from tests.compute.test_servers import make_staff


def layers_of(node: Node) -> set[str]:
    assert node.driver is not None
    return {x.layer_id for x in node.driver.list_layers()}


def leftovers_of(node: Node) -> list[str]:
    assert node.driver is not None
    return [p.name for p in node.driver.layers.leftovers()]


async def set_status(staff: httpx.AsyncClient, server_id: str | None, status: str) -> None:
    r = await staff.patch(f"/v1/admin/servers/{server_id}/status", json={"status": status})
    assert r.status_code == 200, r.text


async def snapshot(api: httpx.AsyncClient, iid: str, name: str) -> dict[str, Any]:
    r = await api.post(f"/v1/instances/{iid}/snapshots", json={"name": name})
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


async def restore_new(api: httpx.AsyncClient, src: str, snap_id: str, **new: Any) -> str:
    new.setdefault("memory_mb", 256)
    r = await api.post(
        f"/v1/instances/{src}/snapshots/{snap_id}/restore", json={"new_instance": new}
    )
    assert r.status_code == 202, r.text
    return str(r.json()["instance"]["id"])


async def image_ready(api: httpx.AsyncClient, image_id: str) -> None:
    async def ready() -> bool:
        body = (await api.get(f"/v1/base-images/{image_id}")).json()
        assert body["status"] in ("building", "ready"), body
        return bool(body["status"] == "ready")

    await wait_for(ready, timeout=120, what=f"image {image_id} ready")


@pytest.fixture
async def cluster(platform: Platform, second_node: Node, db: Any) -> Platform:
    await make_staff(db, "owner@example.com")
    return platform


async def test_snapshot_restored_on_the_other_node_after_a_drain(cluster, second_node):
    api, staff = cluster.api, cluster.browser
    a, b = cluster.node, second_node
    await set_status(staff, b.server_id, "draining")
    src = await create_running(api, name="src")
    assert (await api.get(f"/v1/instances/{src['id']}")).json()["server_id"] == a.server_id
    await fill(api, src["id"], "multi")
    await sh(api, src["id"], "ln -s f1 /data/link && ln /data/f2 /data/hard && mkfifo /data/fifo")
    await sh(api, src["id"], "chown 1234:5678 /data/f3 && chmod 0751 /data/f4")
    # (no device node: an instance cannot make one, ADR 0010; another owner's file and a fifo
    # are the special cases that must survive the copy)
    await sh(api, src["id"], "chown 0:5678 /data/fifo && chown -h 4321:4321 /data/link")
    await sh(api, src["id"], "python3 -c \"import os; os.setxattr('/data/f5', 'user.k', b'v')\"")
    meta = (
        "stat -c '%n %u %g %a %h %F %N %t:%T' /data/* /data/sub/* | LC_ALL=C sort && "
        "python3 -c \"import os; print(os.getxattr('/data/f5', 'user.k'))\""
    )
    files, metadata = await tree(api, src["id"]), await sh(api, src["id"], meta)
    assert "fifo" in metadata and "symbolic link" in metadata and " 1234 5678 " in metadata
    assert " 4321 4321 " in metadata
    snap = await snapshot(api, src["id"], "golden")
    assert snap["server_id"] == a.server_id

    # A drains, B takes new instances: the snapshot's layer is copied to B before the boot
    await set_status(staff, b.server_id, "active")
    await set_status(staff, a.server_id, "draining")
    copy = await restore_new(api, src["id"], snap["id"], name="copy")
    body = await wait_status(api, copy, "running", timeout=120)
    assert body["server_id"] == b.server_id
    assert await tree(api, copy) == files
    assert await sh(api, copy, meta) == metadata
    layer_id = next(iter(layers_of(a)))
    assert layers_of(b) == {layer_id} and not leftovers_of(b)

    # vm-storage reports each server's layers with the servers holding them
    report = (await staff.get(f"/v1/admin/servers/{b.server_id}/vm-storage")).json()
    [entry] = [x for x in report["layers"] if x["layer_id"] == layer_id]
    assert entry["replica"] == "copied"
    assert entry["servers"] == sorted([a.server_id, b.server_id])
    report = (await staff.get(f"/v1/admin/servers/{a.server_id}/vm-storage")).json()
    assert [x["replica"] for x in report["layers"]] == ["captured"]

    # the node API: an export needs the node secret or a ticket for that very layer; an import
    # of a layer already there is a no-op
    async with httpx.AsyncClient(timeout=60) as http:
        export = f"{a.url}/node/layers/{layer_id}/export"
        assert (await http.get(export)).status_code == 401
        as_a = {"Authorization": f"Bearer {a.secret}"}
        ticket = (await http.post(f"{export}-ticket", headers=as_a)).json()["ticket"]
        other = await http.post(f"{a.url}/node/layers/lyr_other/export-ticket", headers=as_a)
        assert other.status_code == 404
        wrong = f"{ticket.split('.')[0]}.{'0' * 64}"
        assert (await http.get(export, headers={TICKET_HEADER: wrong})).status_code == 401
        r = await http.get(f"{a.url}/node/layers", headers={TICKET_HEADER: ticket})
        assert r.status_code == 401  # the ticket opens the export only
        r = await http.post(
            f"{b.url}/node/layers/{layer_id}/import",
            json={"source_url": a.url, "ticket": ticket, "image": "default"},
            headers={"Authorization": f"Bearer {b.secret}"},
        )
        assert r.status_code == 200 and r.json()["imported"] is False, r.text

    # a second restore on B needs no copy: the same layer, still one of it
    again = await restore_new(api, src["id"], snap["id"], name="again")
    assert (await wait_status(api, again, "running", timeout=60))["server_id"] == b.server_id
    assert await tree(api, again) == files

    # deleting the snapshot removes the layer from both servers
    r = await api.delete(f"/v1/instances/{src['id']}/snapshots/{snap['id']}")
    assert r.status_code == 204, r.text
    await wait_for(
        lambda: not layers_of(a) and not layers_of(b), timeout=60, what="layer deleted on both"
    )
    assert await tree(api, copy) == files  # the copy's disk is its own clone

    # a snapshot taken on A, its source deleted, restored in place into the instance on B
    await sh(api, src["id"], "echo later > /data/later")
    later = await snapshot(api, src["id"], "later")
    assert (await api.delete(f"/v1/instances/{src['id']}")).status_code == 202
    await wait_status(api, src["id"], "gone", timeout=60)
    r = await api.post(f"/v1/instances/{copy}/snapshots/{later['id']}/restore", json={})
    assert r.status_code == 200, r.text
    assert (await sh(api, copy, "cat /data/later")).strip() == "later"
    r = await api.delete(f"/v1/instances/{copy}/snapshots/{later['id']}")
    assert r.status_code == 204, r.text
    for iid in (copy, again):
        assert (await api.delete(f"/v1/instances/{iid}")).status_code == 202
        await wait_status(api, iid, "gone", timeout=60)
    await wait_for(
        lambda: not layers_of(a) and not layers_of(b), timeout=60, what="every layer deleted"
    )


async def test_placement_prefers_the_server_holding_the_layers(cluster, second_node):
    api, staff = cluster.api, cluster.browser
    a, b = cluster.node, second_node
    await set_status(staff, b.server_id, "draining")
    src = (await create_running(api, name="src"))["id"]
    await create_running(api, name="filler")  # A now has fewer free slots than B
    await fill(api, src, "pref")
    snap = await snapshot(api, src, "s")
    await set_status(staff, b.server_id, "active")
    plain = await create_running(api, name="plain")
    assert plain["server_id"] == b.server_id  # no layers needed: the most free slots
    restored = await restore_new(api, src, snap["id"])
    body = await wait_status(api, restored, "running", timeout=60)
    assert body["server_id"] == a.server_id  # the holder, though B has more room
    assert not layers_of(b)

    # the holder full: the layer goes to B instead
    await set_status(staff, a.server_id, "draining")
    other = await restore_new(api, src, snap["id"])
    assert (await wait_status(api, other, "running", timeout=60))["server_id"] == b.server_id
    assert layers_of(b) == layers_of(a)


async def test_an_image_chain_built_on_one_node_boots_on_the_other(cluster, second_node):
    api, staff = cluster.api, cluster.browser
    a, b = cluster.node, second_node
    await set_status(staff, b.server_id, "draining")
    r = await api.post(
        "/v1/images/prepare",
        json={"family": "tools", "base_image": "default", "commands": ["echo one > /etc/one"]},
    )
    assert r.status_code == 202, r.text
    v1 = r.json()["id"]
    await image_ready(api, v1)
    # a second version on top of the first: a chain of two layers, both captured on A
    r = await api.post(
        "/v1/images/prepare",
        json={"family": "tools2", "base_image": v1, "commands": ["echo two > /etc/two"]},
    )
    v2 = r.json()["id"]
    await image_ready(api, v2)
    assert (await api.post("/v1/images/promote", json={"image_id": v2})).status_code == 200
    built_on_a = layers_of(a)
    assert len(built_on_a) == 2 and not layers_of(b)

    await set_status(staff, b.server_id, "active")
    await set_status(staff, a.server_id, "draining")
    inst = await create_running(api, image="tools2")
    assert inst["server_id"] == b.server_id
    assert (await sh(api, inst["id"], "cat /etc/one /etc/two")).split() == ["one", "two"]
    assert layers_of(b) == built_on_a  # the whole chain, bottom-up

    # a node stays in the keep-set of both nodes' sweepers
    assert (await api.delete(f"/v1/instances/{inst['id']}")).status_code == 202
    await wait_status(api, inst["id"], "gone", timeout=60)
    assert layers_of(b) == built_on_a  # still held: the images reference them


async def test_a_delete_while_a_holder_is_down_reaches_it_when_it_returns(
    platform: Platform, db: Any, tmp_path: Path
):
    api, staff = platform.api, platform.browser
    await make_staff(db, "owner@example.com")
    a = platform.node
    name = f"b-{uuid.uuid4().hex[:6]}"
    b, task = await start_node(platform.url, tmp_path / "b", name)
    running = True
    try:
        await set_status(staff, b.server_id, "draining")
        src = (await create_running(api))["id"]
        await fill(api, src, "down")
        snap = await snapshot(api, src, "s")
        await set_status(staff, b.server_id, "active")
        await set_status(staff, a.server_id, "draining")
        copy = await restore_new(api, src, snap["id"])
        await wait_status(api, copy, "running", timeout=60)
        assert layers_of(b) == layers_of(a) != set()
        assert (await api.delete(f"/v1/instances/{copy}")).status_code == 202
        await wait_status(api, copy, "gone", timeout=60)

        await stop_node(b, task)  # B holds a replica and is down
        running = False
        r = await api.delete(f"/v1/instances/{src}/snapshots/{snap['id']}")
        assert r.status_code == 204
        # A's copy goes at once; B's row is given up after a few attempts (job backoff)
        await wait_for(lambda: not layers_of(a), timeout=30, what="A's replica deleted")

        async def forgotten() -> bool:
            report = (await staff.get(f"/v1/admin/servers/{a.server_id}/vm-storage")).json()
            return not report["layers"] and not await _layer_rows(db)

        await wait_for(forgotten, timeout=60, what="the layer row gone")
        # B comes back: its sweeper removes what the control plane no longer keeps there
        b, task = await start_node(platform.url, tmp_path / "b", name)
        running = True
        assert not layers_of(b) and not leftovers_of(b)
    finally:
        if running:
            await stop_node(b, task)


async def _layer_rows(db: Any) -> list[str]:
    async with db.transaction() as session:
        return list((await session.execute(select(Layer.id))).scalars())


# --- a transfer cut off midway: the source is a real node process, killed with SIGKILL ---


async def server_named(staff: httpx.AsyncClient, name: str, timeout: float = 300) -> str:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        for s in (await staff.get("/v1/admin/servers")).json()["data"]:
            if s["name"] == name:
                return str(s["id"])
        assert asyncio.get_running_loop().time() < deadline, "the node never registered"
        await asyncio.sleep(0.2)


async def test_a_transfer_cut_off_midway_leaves_nothing_and_fails_the_instance(
    platform: Platform, node_process: NodeProcess, db: Any, compute_settings: Settings
):
    api, staff = platform.api, platform.browser
    await make_staff(db, "owner@example.com")
    b = platform.node  # the in-process node is the target
    await set_status(staff, b.server_id, "draining")
    node_process.start()
    a_id = await server_named(staff, node_process.args[node_process.args.index("--name") + 1])
    src = (await create_running(api, disk_mb=1024))["id"]
    assert (await api.get(f"/v1/instances/{src}")).json()["server_id"] == a_id
    await sh(api, src, "mkdir -p /data && head -c 400M /dev/urandom > /data/big")
    snap = await snapshot(api, src, "big")
    await set_status(staff, b.server_id, "active")
    await set_status(staff, a_id, "draining")
    copy = await restore_new(api, src, snap["id"])

    assert b.driver is not None
    layers_dir = b.driver.layers.layers_dir
    deadline = asyncio.get_running_loop().time() + 60
    while not any(p.name.startswith(".tmp-") for p in layers_dir.iterdir()):
        assert asyncio.get_running_loop().time() < deadline, "the transfer never started"
        await asyncio.sleep(0.005)
    node_process.kill()  # midway: the stream breaks off

    body = await wait_status(api, copy, "error", timeout=60)
    assert "could not be copied" in body["status_reason"], body
    assert not layers_of(b) and not leftovers_of(b)


async def wait_slots(staff: httpx.AsyncClient, server_id: str | None, slots: int) -> None:
    async def reported() -> bool:
        body = (await staff.get(f"/v1/admin/servers/{server_id}")).json()
        return bool(body["slots"] == slots)

    await wait_for(reported, timeout=30, what="a heartbeat with the new slots")


async def test_fork_children_beyond_the_parents_server_go_to_the_other(cluster, second_node):
    api, staff = cluster.api, cluster.browser
    a, b = cluster.node, second_node
    await set_status(staff, b.server_id, "draining")
    parent = (await create_running(api, name="parent"))["id"]
    await fill(api, parent, "forked")
    at_fork = await tree(api, parent)
    await set_status(staff, b.server_id, "active")
    a.config.slots = 2  # the parent and one more
    await wait_slots(staff, a.server_id, 1)

    r = await api.post(f"/v1/instances/{parent}/fork", json={"count": 3})
    assert r.status_code == 202, r.text
    children = [c["instance"] for c in r.json()["children"]]
    assert [c["server_id"] for c in children] == [a.server_id, b.server_id, b.server_id]
    for child in children:
        await wait_status(api, child["id"], "running", timeout=120)
        assert await tree(api, child["id"]) == at_fork
    # every child booted: the fork layer is gone from both servers
    await wait_for(
        lambda: not layers_of(a) and not layers_of(b), timeout=60, what="fork layer deleted"
    )
    a.config.slots = 500
