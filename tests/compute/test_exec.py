"""Exec through the API, against a real instance: exit codes, streams, stdin, env, cwd, argv and
shell strings, timeouts that kill the whole process group, truncation, binary output,
concurrency, the history list, and the server-sent events stream."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import httpx
from sqlalchemy import text

from tests.compute.conftest import create_running
from tests.helpers import error_code


async def _exec(api: httpx.AsyncClient, iid: str, **body: Any) -> dict[str, Any]:
    r = await api.post(f"/v1/instances/{iid}/exec", json=body)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


async def _alive(api: httpx.AsyncClient, iid: str, pid_file: str) -> bool:
    out = await _exec(
        api, iid, command=f"kill -0 $(cat {pid_file}) 2>/dev/null && echo yes || echo no"
    )
    return bool(out["stdout"].strip() == "yes")


async def test_exec_semantics(platform):
    api = platform.api
    iid = (await create_running(api, env={"FROM_INSTANCE": "inst-env"}))["id"]

    out = await _exec(api, iid, command="echo out; echo err >&2; exit 42")
    assert (out["exit_code"], out["stdout"], out["stderr"]) == (42, "out\n", "err\n")
    assert out["timed_out"] is False and out["truncated"] is False
    assert out["encoding"] == "utf-8" and out["exec_id"].startswith("exec_")
    assert out["duration_ms"] >= 0 and out["signal"] is None

    # argv is passed as is: no shell expands anything
    out = await _exec(api, iid, command=["echo", "$HOME", "a b", ";", "*"])
    assert out["stdout"] == "$HOME a b ; *\n"
    # a shell string is run by /bin/sh -c
    out = await _exec(api, iid, command="echo $HOME | tr a-z A-Z")
    assert out["stdout"] == "/ROOT\n"

    # stdin, as text and as base64 bytes
    out = await _exec(api, iid, command=["wc", "-c"], stdin="twelve bytes")
    assert out["stdout"].strip() == "12"
    out = await _exec(
        api,
        iid,
        command=["od", "-An", "-tx1"],
        stdin=base64.b64encode(b"\x00\xff\x10").decode(),
        stdin_encoding="base64",
    )
    assert out["stdout"].split() == ["00", "ff", "10"]
    r = await api.post(
        f"/v1/instances/{iid}/exec",
        json={"command": "cat", "stdin": "@@not base64@@", "stdin_encoding": "base64"},
    )
    assert r.status_code == 400 and error_code(r) == "bad_request"

    # env: the instance's own, then the request's on top; cwd
    out = await _exec(
        api,
        iid,
        command="echo $FROM_INSTANCE $FROM_REQUEST; pwd",
        env={"FROM_REQUEST": "req"},
        cwd="/etc",
    )
    assert out["stdout"] == "inst-env req\n/etc\n"
    out = await _exec(api, iid, command="pwd")
    assert out["stdout"] == "/root\n"

    # a signal-killed process reports the signal
    out = await _exec(api, iid, command="kill -TERM $$")
    assert out["signal"] == 15 and out["exit_code"] == 143

    # a command that cannot start is an error in the documented shape, not a 500
    r = await api.post(f"/v1/instances/{iid}/exec", json={"command": ["/no/such/binary"]})
    assert r.status_code in (400, 409, 422), r.text
    error_code(r)
    r = await api.post(f"/v1/instances/{iid}/exec", json={"command": "true", "cwd": "/no/such/dir"})
    assert r.status_code in (400, 404, 409, 422), r.text
    error_code(r)

    # validation: an empty command, a bad env name
    for body in ({"command": ""}, {"command": []}, {"command": "true", "env": {"1BAD": "x"}}):
        r = await api.post(f"/v1/instances/{iid}/exec", json=body)
        assert r.status_code == 422 and error_code(r) == "validation_failed", body


async def test_timeout_kills_the_process_group(platform):
    api = platform.api
    iid = (await create_running(api))["id"]
    t0 = time.monotonic()
    out = await _exec(
        api,
        iid,
        command="sleep 300 & echo $! > /tmp/grandchild; echo started; sleep 300",
        timeout_s=1,
    )
    assert time.monotonic() - t0 < 10
    assert out["timed_out"] is True and out["stdout"] == "started\n"
    assert out["signal"] == 9
    assert not await _alive(api, iid, "/tmp/grandchild")
    ps = await _exec(api, iid, command="pgrep -x sleep || echo none")
    assert ps["stdout"].strip() == "none"
    history = (await api.get(f"/v1/instances/{iid}/exec")).json()["data"]
    assert history[-1]["status"] == "timed_out"


async def test_large_and_binary_output(platform):
    api = platform.api
    iid = (await create_running(api))["id"]
    limit = 1024 * 1024  # exec_max_output_bytes
    out = await _exec(api, iid, command=f"head -c {limit * 3} /dev/zero | tr '\\0' a")
    assert out["truncated"] is True and out["exit_code"] == 0
    assert len(out["stdout"]) == limit and set(out["stdout"]) == {"a"}

    # just under the limit is whole
    out = await _exec(api, iid, command=f"head -c {limit - 1} /dev/zero | tr '\\0' b")
    assert out["truncated"] is False and len(out["stdout"]) == limit - 1

    # every byte value comes back intact, base64 with the encoding named
    out = await _exec(
        api,
        iid,
        command=["python3", "-c", "import sys; sys.stdout.buffer.write(bytes(range(256)))"],
    )
    assert out["encoding"] == "base64"
    assert base64.b64decode(out["stdout"]) == bytes(range(256))
    assert out["stderr"] == ""


async def test_twenty_concurrent_execs_and_history(platform):
    api = platform.api
    iid = (await create_running(api))["id"]
    t0 = time.monotonic()
    results = await asyncio.gather(
        *(_exec(api, iid, command=f"sleep 1; echo {i}; exit {i % 3}") for i in range(20))
    )
    elapsed = time.monotonic() - t0
    assert [r["stdout"] for r in results] == [f"{i}\n" for i in range(20)]
    assert [r["exit_code"] for r in results] == [i % 3 for i in range(20)]
    assert elapsed < 8, f"20 one-second execs took {elapsed:.1f}s: they did not run concurrently"

    history = (await api.get(f"/v1/instances/{iid}/exec")).json()
    assert history["next_cursor"] is None and len(history["data"]) == 20
    assert {h["command"] for h in history["data"]} == {
        f"sleep 1; echo {i}; exit {i % 3}" for i in range(20)
    }
    for h in history["data"]:
        assert h["status"] == "exited" and h["streamed"] is False
        assert h["finished_at"] >= h["created_at"] and h["duration_ms"] >= 1000
    created = [h["created_at"] for h in history["data"]]
    assert created == sorted(created, reverse=True)
    limited = (await api.get(f"/v1/instances/{iid}/exec", params={"limit": 5})).json()["data"]
    assert len(limited) == 5


def _parse_sse(raw: str) -> list[dict[str, Any]]:
    events = []
    for block in raw.split("\n\n"):
        if not block.strip() or block.startswith(":"):
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n") if not line.startswith(":"))
        assert set(fields) == {"event", "id", "data"}, block
        events.append(
            {"event": fields["event"], "id": fields["id"], "data": json.loads(fields["data"])}
        )
    return events


async def test_stream_format(platform):
    api = platform.api
    iid = (await create_running(api))["id"]
    r = await api.post(
        f"/v1/instances/{iid}/exec/stream",
        json={"command": "echo one; sleep 0.1; echo two >&2; printf '\\377'; exit 5"},
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = _parse_sse(r.text)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "exit"
    ids = [int(e["id"]) for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    start, exit_ = events[0]["data"], events[-1]["data"]
    assert start["exec_id"].startswith("exec_") and start["pid"] > 0
    assert (
        exit_["exit_code"] == 5
        and exit_["duration_ms"] >= 100
        and exit_["exec_id"] == start["exec_id"]
    )
    stdout = [e["data"] for e in events if e["event"] == "stdout"]
    stderr = [e["data"] for e in events if e["event"] == "stderr"]
    assert "".join(d["data"] for d in stderr) == "two\n"
    text = "".join(d["data"] for d in stdout if "encoding" not in d)
    raw = b"".join(base64.b64decode(d["data"]) for d in stdout if d.get("encoding") == "base64")
    assert text == "one\n" and raw == b"\xff"

    # a command that cannot start ends the stream with an error event
    r = await api.post(f"/v1/instances/{iid}/exec/stream", json={"command": ["/no/such/binary"]})
    assert r.status_code == 200
    events = _parse_sse(r.text)
    assert events[-1]["event"] == "error", events
    assert events[-1]["data"]["code"] and events[-1]["data"]["message"]

    # streamed execs are in the history with their outcome
    history = (await api.get(f"/v1/instances/{iid}/exec")).json()["data"]
    assert [(h["streamed"], h["status"], h["exit_code"]) for h in history] == [
        (True, "failed", None),
        (True, "exited", 5),
    ]
    # a stream against a stopped or foreign instance is an ordinary error response
    r = await api.post(
        "/v1/instances/inst_01jabcdefghjkmnpqrstvwxyz0/exec/stream", json={"command": "true"}
    )
    assert r.status_code == 404 and error_code(r) == "not_found"


async def test_stream_disconnect_kills_the_process(platform):
    api = platform.api
    iid = (await create_running(api))["id"]
    async with api.stream(
        "POST",
        f"/v1/instances/{iid}/exec/stream",
        json={"command": "sleep 300 & echo $! > /tmp/child; echo ready; wait"},
    ) as r:
        async for line in r.aiter_lines():
            if line.startswith("data: ") and "ready" in line:
                break
    for _ in range(100):
        if not await _alive(api, iid, "/tmp/child"):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the streamed command outlived its client")
    for _ in range(50):
        history = (await api.get(f"/v1/instances/{iid}/exec")).json()["data"]
        (streamed,) = [h for h in history if h["streamed"]]
        if streamed["status"] != "running":
            break
        await asyncio.sleep(0.05)
    assert streamed["status"] == "killed" and streamed["finished_at"] is not None


async def test_files(platform):
    api = platform.api
    iid = (await create_running(api))["id"]
    files = f"/v1/instances/{iid}/files"

    # utf-8 text, with a mode, creating parents by default
    r = await api.post(
        files,
        json={"path": "/srv/app/deep/run.sh", "content": "#!/bin/sh\necho ran\n", "mode": 0o750},
    )
    assert r.status_code == 200, r.text
    entry = r.json()
    assert (entry["name"], entry["path"], entry["type"], entry["size"]) == (
        "run.sh",
        "/srv/app/deep/run.sh",
        "file",
        19,
    )
    assert entry["mode"] & 0o7777 == 0o750 and entry["modified_at"].endswith("Z")
    assert (await _exec(api, iid, command="/srv/app/deep/run.sh"))["stdout"] == "ran\n"
    assert (await _exec(api, iid, command="stat -c %a /srv/app/deep/run.sh"))["stdout"] == "750\n"

    # base64 bytes round trip exactly; a relative path is under the home directory (like exec's cwd)
    blob = bytes(range(256)) * 40
    r = await api.post(
        files,
        json={
            "path": "data/blob.bin",
            "content": base64.b64encode(blob).decode(),
            "encoding": "base64",
        },
    )
    assert (
        r.status_code == 200
        and r.json()["path"] == "/root/data/blob.bin"
        and r.json()["size"] == len(blob)
    )
    r = await api.get(files, params={"path": "/root/data/blob.bin"})
    assert r.status_code == 200 and r.content == blob
    assert r.headers["content-type"] == "application/octet-stream"
    r = await api.post(files, json={"path": "/x", "content": "%%%", "encoding": "base64"})
    assert r.status_code == 400 and error_code(r) == "bad_request"

    # overwrite replaces the content
    await api.post(files, json={"path": "/data/note.txt", "content": "a much longer first version"})
    await api.post(files, json={"path": "/data/note.txt", "content": "short"})
    assert (await api.get(files, params={"path": "/data/note.txt"})).content == b"short"

    # make_parents false: a missing parent is an error and nothing is created
    r = await api.post(
        files, json={"path": "/nowhere/sub/f.txt", "content": "x", "make_parents": False}
    )
    assert r.status_code == 404 and error_code(r) == "not_found", r.text
    assert (await _exec(api, iid, command="test -e /nowhere && echo yes || echo no"))[
        "stdout"
    ] == "no\n"

    # reading what is not there, or a directory
    r = await api.get(files, params={"path": "/no/such/file"})
    assert r.status_code == 404 and error_code(r) == "not_found"
    r = await api.get(files, params={"path": "/data"})
    assert r.status_code in (400, 409) and error_code(r)
    r = await api.get(files)
    assert r.status_code == 422

    # list with depth
    listing = (await api.get(f"{files}/list", params={"path": "/srv"})).json()["data"]
    assert [(e["name"], e["path"], e["type"]) for e in listing] == [("app", "/srv/app", "dir")]
    deep = (await api.get(f"{files}/list", params={"path": "/srv", "depth": 3})).json()["data"]
    assert sorted(e["path"] for e in deep) == ["/srv/app", "/srv/app/deep", "/srv/app/deep/run.sh"]
    for e in deep:
        assert set(e) >= {"name", "path", "type", "size", "mode", "modified_at"}
    r = await api.get(f"{files}/list", params={"path": "/srv", "depth": 0})
    assert r.status_code == 422
    r = await api.get(f"{files}/list", params={"path": "/no/such/dir"})
    assert r.status_code == 404 and error_code(r) == "not_found"
    await _exec(api, iid, command="ln -s /srv/app /srv/link")
    link = [
        e
        for e in (await api.get(f"{files}/list", params={"path": "/srv"})).json()["data"]
        if e["name"] == "link"
    ]
    assert link[0]["type"] == "symlink" and link[0]["target"] == "/srv/app"


async def test_edit_semantics(platform):
    api = platform.api
    iid = (await create_running(api))["id"]
    files = f"/v1/instances/{iid}/files"
    await api.post(files, json={"path": "/e.txt", "content": "alpha beta beta gamma\nünïcode\n"})

    async def content() -> bytes:
        return (await api.get(files, params={"path": "/e.txt"})).content

    before = await content()
    r = await api.post(f"{files}/edit", json={"path": "/e.txt", "old_str": "delta", "new_str": "x"})
    assert r.status_code == 409 and error_code(r) == "edit_no_match"
    assert r.json()["error"]["details"]["count"] == 0 and await content() == before
    r = await api.post(f"{files}/edit", json={"path": "/e.txt", "old_str": "beta", "new_str": "x"})
    assert r.status_code == 409 and error_code(r) == "edit_not_unique"
    assert r.json()["error"]["details"]["count"] == 2 and await content() == before

    r = await api.post(
        f"{files}/edit", json={"path": "/e.txt", "old_str": "ünïcode", "new_str": "unicode"}
    )
    assert r.status_code == 200 and r.json() == {"path": "/e.txt", "replaced": 1, "count": 1}
    r = await api.post(
        f"{files}/edit",
        json={"path": "/e.txt", "old_str": "beta", "new_str": "B", "replace_all": True},
    )
    assert r.json()["replaced"] == 2
    assert await content() == b"alpha B B gamma\nunicode\n"
    # the replacement may contain the match: replaced once, not looped
    r = await api.post(
        f"{files}/edit", json={"path": "/e.txt", "old_str": "gamma", "new_str": "gamma gamma"}
    )
    assert r.json()["replaced"] == 1 and await content() == b"alpha B B gamma gamma\nunicode\n"
    # deleting text with an empty new_str
    r = await api.post(f"{files}/edit", json={"path": "/e.txt", "old_str": "alpha ", "new_str": ""})
    assert r.status_code == 200 and await content() == b"B B gamma gamma\nunicode\n"

    r = await api.post(
        f"{files}/edit", json={"path": "/missing.txt", "old_str": "a", "new_str": "b"}
    )
    assert r.status_code == 404 and error_code(r) == "not_found"
    r = await api.post(f"{files}/edit", json={"path": "/e.txt", "old_str": "", "new_str": "b"})
    assert r.status_code == 422


async def test_an_instance_stopped_elsewhere_refuses_exec_within_a_second(platform, db):
    """Exec finds a running instance's server from a per-process cache (db/changes.py); a
    status change made by any process reaches it through the database's announcement."""
    api = platform.api
    iid = (await create_running(api))["id"]
    await _exec(api, iid, command="true")  # its route is cached now
    async with db.transaction() as session:
        await session.execute(
            text("UPDATE instances SET status = 'stopped' WHERE id = :id"), {"id": iid}
        )
    deadline = time.monotonic() + 1.0
    while True:
        r = await api.post(f"/v1/instances/{iid}/exec", json={"command": "true"})
        if r.status_code != 200:
            break
        assert time.monotonic() < deadline, "exec still reaches an instance stopped elsewhere"
        await asyncio.sleep(0.01)
    assert r.status_code == 409 and error_code(r) == "instance_not_running"
    async with db.transaction() as session:
        await session.execute(
            text("UPDATE instances SET status = 'running' WHERE id = :id"), {"id": iid}
        )
    assert (await _exec(api, iid, command="echo back"))["stdout"] == "back\n"
