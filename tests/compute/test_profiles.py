"""Profiles: CRUD, tenancy, and instances created from them (env merged, setup commands run
once at first boot, a failing setup command is an error with its reason)."""

from __future__ import annotations

from tests.compute.conftest import create_running, wait_status
from tests.helpers import error_code


async def test_profile_crud_and_isolation(platform, compute_settings, run_jobs):
    from tests.compute.conftest import signed_in

    api = platform.api
    r = await api.post(
        "/v1/profiles",
        json={
            "name": "py",
            "vcpus": 0.5,
            "memory_mb": 256,
            "disk_mb": 512,
            "env": {"A": "1"},
            "idle_timeout_s": 900,
            "setup_commands": ["echo hi"],
        },
    )
    assert r.status_code == 201, r.text
    prof = r.json()
    assert prof["id"].startswith("prof_") and prof["image"] == "default"
    assert (prof["vcpus"], prof["memory_mb"], prof["disk_mb"], prof["env"]) == (
        0.5,
        256,
        512,
        {"A": "1"},
    )
    assert prof["setup_commands"] == ["echo hi"] and prof["updated_at"] is None
    pid = prof["id"]

    r = await api.post("/v1/profiles", json={"name": "py"})
    assert r.status_code == 409 and error_code(r) == "profile_name_taken"
    for bad in ({"name": ""}, {"name": "x", "memory_mb": 1}, {"name": "x", "env": {"=": "v"}}):
        r = await api.post("/v1/profiles", json=bad)
        assert r.status_code == 422 and error_code(r) == "validation_failed", bad
    second = (await api.post("/v1/profiles", json={"name": "second"})).json()
    assert second["vcpus"] == 1 and second["memory_mb"] == 512 and second["setup_commands"] == []

    assert (await api.get(f"/v1/profiles/{pid}")).json() == prof
    page = (await api.get("/v1/profiles", params={"limit": 1})).json()
    assert [p["id"] for p in page["data"]] == [second["id"]] and page["next_cursor"]
    rest = (await api.get("/v1/profiles", params={"cursor": page["next_cursor"]})).json()
    assert [p["id"] for p in rest["data"]] == [pid]

    r = await api.patch(f"/v1/profiles/{pid}", json={"memory_mb": 384, "idle_timeout_s": None})
    assert r.status_code == 200
    assert r.json()["memory_mb"] == 384 and r.json()["idle_timeout_s"] is None
    assert r.json()["name"] == "py" and r.json()["updated_at"] is not None
    r = await api.patch(f"/v1/profiles/{pid}", json={"name": "second"})
    assert r.status_code == 409 and error_code(r) == "profile_name_taken"
    r = await api.patch(f"/v1/profiles/{pid}", json={"name": "py"})  # its own name is fine
    assert r.status_code == 200

    # another org sees none of it, and cannot create from it
    other, other_browser, _ = await signed_in(
        platform.url, "prof-other@example.com", compute_settings, run_jobs
    )
    assert (await other.get("/v1/profiles")).json()["data"] == []
    for method in ("GET", "PATCH", "DELETE"):
        r = await other.request(
            method, f"/v1/profiles/{pid}", json={"name": "x"} if method == "PATCH" else None
        )
        assert r.status_code == 404 and error_code(r) == "not_found", method
    r = await other.post("/v1/instances", json={"profile_id": pid})
    assert r.status_code == 404
    # the same name is free in another org
    assert (await other.post("/v1/profiles", json={"name": "py"})).status_code == 201
    await other.aclose()
    await other_browser.aclose()
    assert (await api.get("/v1/profiles/inst_01jabcdefghjkmnpqrstvwxyz0")).status_code == 404

    assert (await api.delete(f"/v1/profiles/{pid}")).status_code == 204
    assert (await api.get(f"/v1/profiles/{pid}")).status_code == 404
    assert (await api.delete(f"/v1/profiles/{pid}")).status_code == 404


async def test_instance_from_profile_runs_setup_once(platform):
    api = platform.api
    prof = (
        await api.post(
            "/v1/profiles",
            json={
                "name": "web",
                "memory_mb": 256,
                "disk_mb": 256,
                "env": {"FROM_PROFILE": "p", "OVERRIDDEN": "profile"},
                "idle_timeout_s": 600,
                "setup_commands": [
                    "echo boot >> /root/setup.log",
                    "echo $FROM_PROFILE-$OVERRIDDEN > /root/env.txt",
                ],
            },
        )
    ).json()
    r = await api.post(
        "/v1/instances", json={"profile_id": prof["id"], "env": {"OVERRIDDEN": "request"}}
    )
    assert r.status_code == 202, r.text
    created = r.json()
    assert created["profile_id"] == prof["id"]
    assert (created["memory_mb"], created["disk_mb"], created["idle_timeout_s"]) == (256, 256, 600)
    assert created["env"] == {"FROM_PROFILE": "p", "OVERRIDDEN": "request"}
    iid = created["id"]
    await wait_status(api, iid, "running")

    files = f"/v1/instances/{iid}/files"
    assert (await api.get(files, params={"path": "/root/setup.log"})).content == b"boot\n"
    assert (await api.get(files, params={"path": "/root/env.txt"})).content == b"p-request\n"
    out = (await api.post(f"/v1/instances/{iid}/exec", json={"command": "echo $OVERRIDDEN"})).json()
    assert out["stdout"] == "request\n"

    # the body wins over the profile; a later profile change does not touch the instance
    other = await create_running(api, profile_id=prof["id"], memory_mb=320, idle_timeout_s=60)
    assert (other["memory_mb"], other["idle_timeout_s"]) == (320, 60)
    await api.patch(f"/v1/profiles/{prof['id']}", json={"memory_mb": 512})
    assert (await api.get(f"/v1/instances/{iid}")).json()["memory_mb"] == 256

    # restart and stop/start do not run setup again
    assert (await api.post(f"/v1/instances/{iid}/vm/restart")).status_code == 200
    await api.delete(f"/v1/instances/{iid}/vm")
    await wait_status(api, iid, "stopped")
    await api.post(f"/v1/instances/{iid}/vm")
    await wait_status(api, iid, "running")
    assert (await api.get(files, params={"path": "/root/setup.log"})).content == b"boot\n"

    # deleting the profile leaves its instances alone
    assert (await api.delete(f"/v1/profiles/{prof['id']}")).status_code == 204
    assert (await api.get(f"/v1/instances/{iid}")).json()["status"] == "running"


async def test_failing_setup_marks_the_instance_error(platform):
    api = platform.api
    prof = (
        await api.post(
            "/v1/profiles",
            json={
                "name": "broken",
                "memory_mb": 256,
                "disk_mb": 256,
                "setup_commands": ["touch /root/first", "exit 7", "touch /root/never"],
            },
        )
    ).json()
    iid = (await api.post("/v1/instances", json={"profile_id": prof["id"]})).json()["id"]
    inst = await wait_status(api, iid, "error")
    assert inst["status_reason"] == "setup command failed (7): exit 7"
    # an errored instance can be stopped, and started again: setup is retried then
    r = await api.delete(f"/v1/instances/{iid}/vm")
    assert r.status_code == 202
    await wait_status(api, iid, "stopped")
    assert (await api.post(f"/v1/instances/{iid}/vm")).status_code == 202
    inst = await wait_status(api, iid, "error")
    assert inst["status_reason"] == "setup command failed (7): exit 7"
    assert (await api.delete(f"/v1/instances/{iid}")).status_code == 202
    await wait_status(api, iid, "gone")
