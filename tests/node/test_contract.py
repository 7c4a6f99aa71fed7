"""The node contract (node/contract.py, ADR 0012): every route of the node's app speaks its
models, they survive the wire both ways, and the single-use layer tickets hold over HTTP."""

from __future__ import annotations

import asyncio
import socket
import uuid

import httpx
import pytest
import uvicorn
from fastapi.routing import APIRoute, APIWebSocketRoute
from pydantic import BaseModel, TypeAdapter

from forkyard.compute.node_client import NodeClient, RemoteError
from forkyard.node import contract as c
from forkyard.node import rpc
from forkyard.node.layers import TICKET_HEADER
from forkyard.node.server import create_node_app

from .test_layer_transfer import make_layer

SECRET = "contract-test-secret-0123456789"


def test_every_node_route_declares_contract_models(driver):
    app = create_node_app(driver, SECRET)
    routes = [r for r in app.routes if isinstance(r, APIRoute)]
    assert len(routes) >= 20
    for route in routes:
        where = f"{sorted(route.methods)} {route.path}"
        # the answer: a contract model, or a stream whose items or bytes a contract model names
        answer = route.response_model or route.responses.get(200, {}).get("model")
        assert isinstance(answer, type) and issubclass(answer, c.Contract), where
        # the body, if any: a contract model (the streamed upload's body is the file itself)
        for param in route.dependant.body_params:
            assert issubclass(param.field_info.annotation, c.Contract), where
        if route.path == "/node/instances/{instance_id}/files/content":
            assert not route.dependant.body_params
    sockets = {r.path for r in app.routes if isinstance(r, APIWebSocketRoute)}
    assert "/node/rpc" in sockets
    assert set(rpc.OPS) == set(c.CHANNEL_OPS)  # the channel serves exactly its typed ops


def test_contract_models_round_trip():
    layer = {
        "layer_id": "lyr_a",
        "path": "/store/layers/lyr_a",
        "parent": None,
        "lower": ["/store/layers/lyr_b/root/upper", "/images/default"],
        "filesystem": "xfs",
        "disk_mb": 1024,
        "data_bytes": 4096,
        "source_instance": "inst_1",
        "created_at": "2026-01-01T00:00:00+00:00",
        "pause_ms": 1.5,
        "capture_ms": 9.25,
        "lower_layers": ["lyr_b"],
        "image": "/images/default",
    }
    samples: list[BaseModel] = [
        c.SandboxSpecIn(
            instance_id="inst_1",
            image="default",
            vcpus=0.5,
            memory_mb=256,
            disk_mb=1024,
            env={"A": "b"},
            hostname="inst-1",
            layer_ids=["lyr_b"],
            from_layer="lyr_a",
        ),
        c.BootOut(pid=42, boot_ms=88.5, created_disk=True),
        c.StatsOut(
            state="running",
            cpu_seconds=1.5,
            memory_bytes=1,
            memory_rss_bytes=2,
            memory_limit_bytes=3,
            disk_used_bytes=4,
            disk_total_bytes=5,
            pids=6,
            pids_max=None,
        ),
        c.LayerOut.model_validate(layer),
        c.ImportOut.model_validate(
            {**layer, "imported": True, "received_bytes": 10, "copy_ms": 3.5}
        ),
        c.ForkIn(
            layer_id="lyr_f",
            children=[
                c.SandboxSpecIn(instance_id="k", image="default", vcpus=1, memory_mb=1, disk_mb=1)
            ],
        ),
        c.ForkOut(
            layer=c.LayerOut.model_validate(layer),
            children=[
                c.ForkChildOut(instance_id="k1", pid=7, boot_ms=50.0, error=None),
                c.ForkChildOut(
                    instance_id="k2",
                    pid=None,
                    boot_ms=None,
                    error=c.ErrorOut(code="sandbox_failed", message="no"),
                ),
            ],
        ),
        c.RollbackOut(state="stopped", pid=None, boot_ms=None, origin="lyr_a"),
        c.ImportIn(source_url="http://node-a:8700", ticket="1.n.mac", image="default"),
        c.ExecEvent(type="exit", exit_code=0, signal=None, timed_out=False, duration_ms=1.0),
        c.PingOut.model_validate({"ok": True, "version": 3}),
    ]
    for model in samples:
        wire = model.model_dump_json()
        assert type(model).model_validate_json(wire) == model, type(model).__name__
    # a field the other side does not know is refused, not dropped (the two sides drifted)
    bad = c.SandboxSpecIn(image="default", vcpus=1, memory_mb=1, disk_mb=1).model_dump()
    try:
        c.SandboxSpecIn.model_validate({**bad, "layers": ["/etc"]})
    except ValueError:
        pass
    else:
        raise AssertionError("an unknown spec field was accepted")
    # the call channel's shapes are plain JSON, checked here rather than per call
    channel = [
        (
            "exec",
            {"command": ["true"], "timeout_s": 5},
            {
                "exit_code": 0,
                "stdout_b64": "",
                "stderr_b64": "",
                "timed_out": False,
                "truncated": False,
                "duration_ms": 1.2,
                "signal": None,
            },
        ),
        ("files.edit", {"path": "/a", "old_str": "x", "new_str": "y"}, {"count": 1, "replaced": 1}),
        ("files.list", {"path": "/", "depth": 2}, {"entries": []}),
    ]
    for op, params, result in channel:
        call, answer = c.CHANNEL_OPS[op]
        for shape, value in ((call, params), (answer, result)):
            adapter = TypeAdapter(shape)
            assert adapter.validate_json(adapter.dump_json(value)) == value, op


async def test_a_used_layer_ticket_is_refused(driver):
    app = create_node_app(driver, SECRET)
    make_layer(driver.layers, "lyr_ticket")
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as http:
            auth = {"Authorization": f"Bearer {SECRET}"}
            r = await http.post("/node/layers/lyr_ticket/export-ticket", headers=auth)
            ticket = c.ExportTicketOut.model_validate(r.json()).ticket
            export = "/node/layers/lyr_ticket/export"
            first = await http.get(export, headers={TICKET_HEADER: ticket})
            assert first.status_code == 200 and first.content.startswith(b"FYLAYER1\n")
            replay = await http.get(export, headers={TICKET_HEADER: ticket})
            assert replay.status_code == 401
            assert replay.json()["error"]["code"] == "unauthenticated"
            # a fresh ticket still works; the node secret needs none
            r = await http.post("/node/layers/lyr_ticket/export-ticket", headers=auth)
            fresh = r.json()["ticket"]
            assert (await http.get(export, headers={TICKET_HEADER: fresh})).status_code == 200
            assert (await http.get(export, headers=auth)).status_code == 200
    finally:
        await driver.delete_layer("lyr_ticket")


async def test_the_control_planes_typed_client_drives_a_node(driver, default_image):
    """Every typed NodeClient call against a real node: the answers parse as the contract says."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_node_app(driver, SECRET, {"default": default_image})
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    node = NodeClient(f"http://127.0.0.1:{port}", SECRET)
    iid = f"t-{uuid.uuid4().hex[:10]}"
    spec = c.SandboxSpecIn(image="default", vcpus=1, memory_mb=256, disk_mb=128)
    try:
        booted = await node.boot(iid, spec)
        assert booted.pid > 0 and booted.created_disk
        assert (await node.ping(iid)).ok
        assert (await node.stats(iid)).state == "running"
        assert (await node.instances()).instances[iid] == "running"
        assert iid in {x.instance_id for x in (await node.storage()).instances}
        ran = await node.exec(iid, {"command": "echo hi > /root/f"})
        assert ran["exit_code"] == 0
        layer = await node.checkpoint(iid, "lyr_contract")
        assert layer.layer_id == "lyr_contract" and layer.source_instance == iid
        assert "lyr_contract" in {x.layer_id for x in (await node.layers()).layers}
        usage = await node.layer_usage()
        assert "lyr_contract" in {x.layer_id for x in usage.layers}
        await node.exec(iid, {"command": "rm /root/f"})
        back = await node.rollback(iid, "lyr_contract")
        assert back.state == "running" and back.origin == "lyr_contract" and back.pid
        assert (await node.exec(iid, {"command": "cat /root/f"}))["exit_code"] == 0
        with pytest.raises(RemoteError) as refused:
            await node.boot("t-other", spec.model_copy(update={"image": "/etc"}))
        assert refused.value.code == "unknown_image"
        assert (await node.stop(iid)).state == "stopped"
    finally:
        assert (await node.destroy(iid)).state == "absent"
        assert (await node.delete_layer("lyr_contract")).deleted == "lyr_contract"
        await node.close()
        server.should_exit = True
        await task
