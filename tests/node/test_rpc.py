"""The node's call channel (node/rpc.py) over a real WebSocket, as the control plane uses it."""

import asyncio
import base64
import socket

import pytest
import uvicorn

from forkyard.compute.errors import NodeUnreachable
from forkyard.compute.node_client import NodeRpc, RemoteError
from forkyard.node.rpc import MAX_MESSAGE
from forkyard.node.server import create_node_app

SECRET = "rpc-test-secret-0123456789"


@pytest.fixture
async def node_url(driver):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_node_app(driver, SECRET),
            host="127.0.0.1",
            port=port,
            log_config=None,
            lifespan="off",
            ws_max_size=MAX_MESSAGE,
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


async def test_calls_are_answered_and_multiplexed(node_url, instance):
    rpc = NodeRpc(node_url, SECRET)
    try:
        r = await rpc.call(
            "exec", instance, {"command": "printf 'a\\377b'; echo err >&2; exit 3"}, timeout=30
        )
        assert r["exit_code"] == 3
        assert base64.b64decode(r["stdout_b64"]) == b"a\xffb"
        assert base64.b64decode(r["stderr_b64"]) == b"err\n"

        # Ten calls in flight on one connection, each answered with its own result.
        results = await asyncio.gather(
            *[
                rpc.call("exec", instance, {"command": f"sleep 0.2; echo {i}"}, timeout=30)
                for i in range(10)
            ]
        )
        assert [base64.b64decode(x["stdout_b64"]) for x in results] == [
            f"{i}\n".encode() for i in range(10)
        ]

        written = await rpc.call(
            "files.write",
            instance,
            {"path": "/root/note.txt", "content_b64": base64.b64encode(b"hi").decode()},
            timeout=30,
        )
        assert written["size"] == 2
        edited = await rpc.call(
            "files.edit",
            instance,
            {"path": "/root/note.txt", "old_str": "hi", "new_str": "ho"},
            timeout=30,
        )
        assert edited == {"count": 1, "replaced": 1}
    finally:
        await rpc.close()


async def test_errors_come_back_with_their_code(node_url, instance):
    rpc = NodeRpc(node_url, SECRET)
    try:
        with pytest.raises(RemoteError) as missing:
            await rpc.call("exec", "t-nosuchinstance", {"command": "true"}, timeout=30)
        assert (missing.value.status_code, missing.value.code) == (404, "instance_not_found")
        with pytest.raises(RemoteError) as unknown:
            await rpc.call("format-disk", instance, {}, timeout=30)
        assert unknown.value.code == "invalid_request"
        with pytest.raises(RemoteError) as bad:
            await rpc.call("exec", instance, {"no_command": 1}, timeout=30)
        assert bad.value.code == "invalid_request"
        # The channel is still usable after errors.
        r = await rpc.call("exec", instance, {"command": "echo ok"}, timeout=30)
        assert base64.b64decode(r["stdout_b64"]) == b"ok\n"
    finally:
        await rpc.close()


async def test_a_wrong_secret_is_refused(node_url, instance):
    rpc = NodeRpc(node_url, "not-the-secret-000000000000")
    with pytest.raises(NodeUnreachable):
        await rpc.call("exec", instance, {"command": "true"}, timeout=30)
    await rpc.close()


async def test_a_call_given_up_kills_its_process(node_url, instance):
    rpc = NodeRpc(node_url, SECRET)
    try:
        with pytest.raises(NodeUnreachable):
            await rpc.call(
                "exec", instance, {"command": "sleep 1.5 && touch /root/finished"}, timeout=0.3
            )
        await asyncio.sleep(2.0)
        r = await rpc.call("exec", instance, {"command": "ls /root"}, timeout=30)
        assert b"finished" not in base64.b64decode(r["stdout_b64"])
    finally:
        await rpc.close()


async def test_the_channel_reconnects_after_a_drop(node_url, instance):
    rpc = NodeRpc(node_url, SECRET)
    try:
        await rpc.call("exec", instance, {"command": "true"}, timeout=30)
        assert rpc._ws is not None
        await rpc._ws.close()
        await asyncio.sleep(0.05)
        r = await rpc.call("exec", instance, {"command": "echo again"}, timeout=30)
        assert base64.b64decode(r["stdout_b64"]) == b"again\n"
    finally:
        await rpc.close()


async def test_a_bad_or_oversized_call_fails_alone(node_url, instance):
    """The channel carries every tenant's calls: garbage, a call too large for one message and
    an answer too large for one fail on their own, and a call in flight carries on."""
    from forkyard.compute.errors import CallTooLarge

    rpc = NodeRpc(node_url, SECRET)
    try:
        running = asyncio.create_task(
            rpc.call("exec", instance, {"command": "sleep 1; echo survived"}, timeout=30)
        )
        await asyncio.sleep(0.2)
        ws = rpc._ws
        assert ws is not None
        for junk in ("not json", "[1, 2]", '{"op": "exec"}', '{"id": {"x": 1}}', b"\x00\xff"):
            await ws.send(junk)
        with pytest.raises(CallTooLarge) as too_large:
            await rpc.call(
                "files.write",
                instance,
                {"path": "/root/x", "content_b64": "A" * (MAX_MESSAGE + 1)},
                timeout=30,
            )
        assert too_large.value.status_code == 413
        r = await running
        assert base64.b64decode(r["stdout_b64"]) == b"survived\n"
        assert rpc._ws is ws  # the same connection throughout
        r = await rpc.call("exec", instance, {"command": "echo next"}, timeout=30)
        assert base64.b64decode(r["stdout_b64"]) == b"next\n"
    finally:
        await rpc.close()


async def test_exec_output_is_capped_by_the_node(node_url, instance):
    """Whatever cap the control plane asks for, an answer fits in one message."""
    from forkyard.node.rpc import MAX_EXEC_OUTPUT

    rpc = NodeRpc(node_url, SECRET)
    try:
        r = await rpc.call(
            "exec",
            instance,
            {"command": "head -c 100000000 /dev/zero", "max_output": 10**12},
            timeout=60,
        )
        assert r["truncated"] and len(base64.b64decode(r["stdout_b64"])) == MAX_EXEC_OUTPUT
    finally:
        await rpc.close()
