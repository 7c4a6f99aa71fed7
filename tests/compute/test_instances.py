from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import httpx
from sqlalchemy import update

from forkyard.jobs.models import Job
from forkyard.kit.clock import utcnow
from tests.compute.conftest import create_running, wait_status
from tests.helpers import error_code


async def test_create_exec_and_delete(platform, tmp_path):
    api = platform.api
    r = await api.post(
        "/v1/instances",
        json={"name": "first", "memory_mb": 256, "disk_mb": 256, "labels": {"team": "a"}},
    )
    assert r.status_code == 202, r.text
    created = r.json()
    assert created["status"] == "provisioning" and created["id"].startswith("inst_")
    inst = await wait_status(api, created["id"], "running")
    assert inst["capabilities"]["memory_preserved_on_rollback"] is False

    r = await api.post(
        f"/v1/instances/{inst['id']}/exec", json={"command": "echo hello; echo oops >&2; exit 3"}
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["exit_code"], out["stdout"], out["stderr"]) == (3, "hello\n", "oops\n")

    r = await api.post(
        f"/v1/instances/{inst['id']}/exec", json={"command": ["cat"], "stdin": "piped in"}
    )
    assert r.json()["stdout"] == "piped in"

    listed = await api.get("/v1/instances", params={"label": "team=a"})
    assert [i["id"] for i in listed.json()["data"]] == [inst["id"]]
    assert (await api.get("/v1/instances", params={"label": "team=b"})).json()["data"] == []

    history = (await api.get(f"/v1/instances/{inst['id']}/exec")).json()["data"]
    assert [h["exit_code"] for h in history] == [0, 3]

    vm = (await api.get(f"/v1/instances/{inst['id']}/vm")).json()
    assert vm["state"] == "running" and vm["memory_bytes"] > 0 and vm["pids"] >= 1

    d = await api.delete(f"/v1/instances/{inst['id']}")
    assert d.status_code == 202 and d.json()["status"] == "deleting"
    await wait_status(api, inst["id"], "gone")
    assert platform.node.driver.list_owned() == set()


async def test_create_with_wait_answers_running(platform, run_jobs, db):
    api = platform.api
    r = await api.post("/v1/instances", params={"wait": "true"}, json={"memory_mb": 256})
    assert r.status_code == 201, r.text
    inst = r.json()
    assert inst["status"] == "running"
    r = await api.post(f"/v1/instances/{inst['id']}/exec", json={"command": "echo up"})
    assert r.json()["stdout"] == "up\n"

    # The boot queued as a safety net (due in a minute) finds nothing left to do.
    async with db.transaction() as session:
        due = await session.execute(
            update(Job)
            .where(Job.name == "instance.boot", Job.payload["instance_id"].astext == inst["id"])
            .values(run_at=utcnow())
            .returning(Job.status)
        )
        assert due.scalars().all() == ["queued"]
    await run_jobs()
    vm = (await api.get(f"/v1/instances/{inst['id']}/vm")).json()
    assert vm["state"] == "running" and vm["boots"] == 1
    assert (await api.get(f"/v1/instances/{inst['id']}")).json()["status"] == "running"

    # The creation is audited like any other (it commits in its own transaction, before the boot).
    audit = await platform.browser.get("/v1/audit", params={"action": "instance.created"})
    assert audit.status_code == 200, audit.text
    assert inst["id"] in {e["target_id"] for e in audit.json()["data"]}

    # Without a verified email or over quota, wait changes nothing: the same errors, and no
    # instance is left behind by the refused one.
    r = await api.post("/v1/instances", params={"wait": "true"}, json={"vcpus": 10_000})
    assert r.status_code in (403, 422), r.text
    listed = (await api.get("/v1/instances")).json()["data"]
    assert [i["id"] for i in listed] == [inst["id"]]


async def test_stop_start_keeps_disk_and_bad_transitions_are_409(platform):
    api = platform.api
    inst = await create_running(api)
    iid = inst["id"]
    w = await api.post(
        f"/v1/instances/{iid}/files", json={"path": "/root/keep.txt", "content": "still here"}
    )
    assert w.status_code == 200, w.text
    assert (await api.delete(f"/v1/instances/{iid}/vm")).status_code == 202
    await wait_status(api, iid, "stopped")
    r = await api.post(f"/v1/instances/{iid}/exec", json={"command": "true"})
    assert r.status_code == 409 and error_code(r) == "instance_not_running"
    r = await api.delete(f"/v1/instances/{iid}/vm")
    assert r.status_code == 409 and error_code(r) == "invalid_transition"
    assert (await api.post(f"/v1/instances/{iid}/vm")).status_code == 202
    await wait_status(api, iid, "running")
    r = await api.get(f"/v1/instances/{iid}/files", params={"path": "/root/keep.txt"})
    assert r.status_code == 200 and r.content == b"still here"
    r = await api.post(f"/v1/instances/{iid}/vm")
    assert r.status_code == 409


async def test_files_edit_list_and_escapes_stay_inside(platform):
    api = platform.api
    iid = (await create_running(api))["id"]
    ok = await api.post(
        f"/v1/instances/{iid}/files", json={"path": "/work/a.txt", "content": "one two two"}
    )
    assert ok.status_code == 200 and ok.json()["size"] == 11
    none = await api.post(
        f"/v1/instances/{iid}/files/edit",
        json={"path": "/work/a.txt", "old_str": "three", "new_str": "x"},
    )
    assert none.status_code == 409 and error_code(none) == "edit_no_match"
    many = await api.post(
        f"/v1/instances/{iid}/files/edit",
        json={"path": "/work/a.txt", "old_str": "two", "new_str": "x"},
    )
    assert many.status_code == 409 and many.json()["error"]["details"]["count"] == 2
    one = await api.post(
        f"/v1/instances/{iid}/files/edit",
        json={"path": "/work/a.txt", "old_str": "one", "new_str": "1"},
    )
    assert one.status_code == 200 and one.json()["replaced"] == 1
    assert (
        await api.get(f"/v1/instances/{iid}/files", params={"path": "/work/a.txt"})
    ).content == b"1 two two"
    listing = (await api.get(f"/v1/instances/{iid}/files/list", params={"path": "/work"})).json()[
        "data"
    ]
    assert [(e["name"], e["type"]) for e in listing] == [("a.txt", "file")]
    # a symlink to the host's root and `..` both resolve inside the instance
    await api.post(f"/v1/instances/{iid}/exec", json={"command": "ln -s / /work/host"})
    host_secret = Path(tempfile.mkdtemp(prefix="host-only-", dir="/var/tmp")) / "secret"
    host_secret.write_text("host data")
    for path in (
        f"/work/host/../../..{host_secret}",
        str(host_secret),
        f"../../../../{host_secret}",
    ):
        r = await api.get(f"/v1/instances/{iid}/files", params={"path": path})
        assert r.status_code == 404, (path, r.text)
    r = await api.post(
        f"/v1/instances/{iid}/files",
        json={"path": f"/work/host/../..{host_secret}", "content": "x"},
    )
    assert r.status_code == 200 and host_secret.read_text() == "host data"
    host_secret.unlink()
    host_secret.parent.rmdir()
    b = await api.post(
        f"/v1/instances/{iid}/files",
        json={"path": "/bin.dat", "content": "AAEC/w==", "encoding": "base64"},
    )
    assert b.status_code == 200
    r = await api.post(f"/v1/instances/{iid}/exec", json={"command": "cat /bin.dat"})
    assert r.json()["encoding"] == "base64" and r.json()["stdout"] == "AAEC/w=="


async def test_exec_stream_events_and_disconnect_kills(platform):
    api = platform.api
    iid = (await create_running(api))["id"]
    events = []
    async with api.stream(
        "POST",
        f"/v1/instances/{iid}/exec/stream",
        json={"command": "echo a; sleep 0.2; echo b >&2; exit 7"},
    ) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        event = None
        async for line in r.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                events.append(event)
    assert events[0] == "start" and events[-1] == "exit"
    assert "stdout" in events and "stderr" in events

    async with api.stream(
        "POST",
        f"/v1/instances/{iid}/exec/stream",
        json={"command": "sleep 300 & echo $! > /tmp/pid; wait"},
    ) as r:
        async for line in r.aiter_lines():
            if line.startswith("event: start"):
                break
    await asyncio.sleep(0.5)
    r = await api.post(f"/v1/instances/{iid}/exec", json={"command": "pgrep -x sleep || echo none"})
    assert r.json()["stdout"].strip() == "none"


async def test_org_isolation_and_verified_email(platform, compute_settings, run_jobs):
    from tests.compute.conftest import signed_in

    iid = (await create_running(platform.api))["id"]
    other, other_browser, _ = await signed_in(
        platform.url, "other@example.com", compute_settings, run_jobs
    )
    for method, path in [
        ("GET", f"/v1/instances/{iid}"),
        ("DELETE", f"/v1/instances/{iid}"),
        ("POST", f"/v1/instances/{iid}/exec"),
        ("GET", f"/v1/instances/{iid}/vm"),
    ]:
        r = await other.request(
            method, path, json={"command": "true"} if method == "POST" else None
        )
        assert r.status_code == 404, (method, path, r.text)
    assert (await other.get("/v1/instances")).json()["data"] == []
    r = await other.get("/v1/instances/inst_notarealid")
    assert r.status_code == 404
    r = await other.get("/v1/instances/prof_01jabcdefghjkmnpqrstvwxyz0")
    assert r.status_code == 404
    await other.aclose()
    await other_browser.aclose()

    unverified = platform.browser.__class__(base_url=platform.url, headers={"Origin": platform.url})
    from tests.helpers import login, signup

    await signup(unverified, "unverified@example.com")
    await login(unverified, "unverified@example.com")
    r = await unverified.post("/v1/instances", json={})
    assert r.status_code == 403 and error_code(r) == "email_not_verified"
    # ... nor with an API key the unverified user made
    key = (await unverified.post("/v1/api-keys", json={"name": "k"})).json()["key"]
    async with httpx.AsyncClient(
        base_url=platform.url, headers={"Authorization": f"Bearer {key}"}
    ) as by_key:
        r = await by_key.post("/v1/instances", json={})
        assert r.status_code == 403 and error_code(r) == "email_not_verified"
        r = await by_key.post(f"/v1/instances/{iid}/fork", json={"count": 1})
        assert r.status_code == 403 and error_code(r) == "email_not_verified"
    await unverified.aclose()


async def test_quota(platform, control_plane):
    api = platform.api
    r = await api.post("/v1/instances", json={"memory_mb": 300000})
    assert r.status_code == 422
    r = await api.post("/v1/instances", json={"vcpus": 60, "memory_mb": 256})
    assert r.status_code == 202
    r = await api.post("/v1/instances", json={"vcpus": 8, "memory_mb": 256})
    assert r.status_code == 403 and error_code(r) == "quota_exceeded"
    assert r.json()["error"]["details"]["limit"] == "max_vcpus"
