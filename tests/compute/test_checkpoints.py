from __future__ import annotations

from tests.compute.conftest import create_running, signed_in, wait_status
from tests.compute.state_helpers import fill, node_layers, sh, tree, wait_for
from tests.helpers import error_code


async def test_checkpoint_mutate_rollback_and_undo(platform):
    api = platform.api
    iid = (await create_running(api))["id"]
    await fill(api, iid, "one")
    original = await tree(api, iid)

    r = await api.post(f"/v1/instances/{iid}/checkpoints", json={"name": "good"})
    assert r.status_code == 201, r.text
    good = r.json()
    assert good["id"].startswith("ckpt_") and good["name"] == "good"
    assert good["parent_id"] is None and good["reason"] == "manual"

    await sh(api, iid, "rm /data/f1 && echo changed > /data/f2 && echo new > /data/f9")
    await fill(api, iid, "two")
    mutated = await tree(api, iid)
    assert mutated != original
    second = (await api.post(f"/v1/instances/{iid}/checkpoints", json={})).json()
    assert second["parent_id"] == good["id"]

    r = await api.post(f"/v1/instances/{iid}/rollback", json={"checkpoint_id": good["id"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["rolled_back_to"] == good["id"]
    assert body["processes_restarted"] is True and body["memory_preserved"] is False
    assert body["instance"]["status"] == "running"
    assert body["instance"]["capabilities"]["memory_preserved_on_rollback"] is False
    before = body["checkpoint"]
    assert before["reason"] == "before_rollback" and before["parent_id"] == second["id"]
    assert await tree(api, iid) == original

    # Undo the rollback: back to the state just before it.
    r = await api.post(f"/v1/instances/{iid}/rollback", json={"checkpoint_id": before["id"]})
    assert r.status_code == 200, r.text
    assert await tree(api, iid) == mutated

    listed = (await api.get(f"/v1/instances/{iid}/checkpoints")).json()["data"]
    by_id = {c["id"]: c for c in listed}
    assert len(listed) == 4
    assert by_id[before["id"]]["parent_id"] == second["id"]
    undo = r.json()["checkpoint"]
    assert by_id[undo["id"]]["parent_id"] == good["id"]  # the rollback's head was `good`
    one = await api.get(f"/v1/instances/{iid}/checkpoints/{good['id']}")
    assert one.status_code == 200 and one.json()["name"] == "good"
    assert len(node_layers(platform)) == 4


async def test_sqlite_written_during_checkpoint_opens_cleanly(platform):
    api = platform.api
    iid = (await create_running(api))["id"]
    writer = (
        "import sqlite3, time\n"
        "db = sqlite3.connect('/data/app.db')\n"
        "db.execute('pragma journal_mode=wal')\n"
        "db.execute('create table if not exists t (i integer, pad text)')\n"
        "i = 0\n"
        "while True:\n"
        "    db.execute('insert into t values (?, ?)', (i, 'x' * 500)); db.commit(); i += 1\n"
    )
    await sh(api, iid, "mkdir -p /data")
    await api.post(f"/v1/instances/{iid}/files", json={"path": "/data/w.py", "content": writer})
    await sh(api, iid, "nohup python3 /data/w.py >/dev/null 2>&1 & sleep 0.5")
    ckpts = []
    for _ in range(3):
        r = await api.post(f"/v1/instances/{iid}/checkpoints", json={})
        assert r.status_code == 201, r.text
        ckpts.append(r.json()["id"])
    for ckpt in ckpts:
        r = await api.post(f"/v1/instances/{iid}/rollback", json={"checkpoint_id": ckpt})
        assert r.status_code == 200, r.text
        out = await sh(
            api,
            iid,
            "python3 -c \"import sqlite3; db = sqlite3.connect('/data/app.db'); "
            "print(db.execute('pragma integrity_check').fetchone()[0], "
            "db.execute('select count(*) from t').fetchone()[0])\"",
        )
        status, count = out.split()
        assert status == "ok" and int(count) > 0
        # the writer did not survive the rollback: processes restart
        assert "w.py" not in await sh(api, iid, "ps -eo args")


async def test_failed_checkpoint_records_nothing_and_instance_keeps_running(platform, tmp_path):
    import subprocess

    api = platform.api
    iid = (await create_running(api))["id"]
    await fill(api, iid, "x")
    layers_before = node_layers(platform)
    # The capture fails midway (processes frozen, then the clone fails: the disk image's path
    # now names a file on another filesystem).
    disk = platform.node.driver.disk_image(iid)
    elsewhere = tmp_path / "not-the-disk.img"
    elsewhere.write_bytes(b"x" * 4096)
    subprocess.run(["mount", "--bind", str(elsewhere), str(disk)], check=True)
    try:
        r = await api.post(f"/v1/instances/{iid}/checkpoints", json={"name": "doomed"})
    finally:
        subprocess.run(["umount", str(disk)], check=True)
    assert r.status_code == 500 and error_code(r) == "capture_failed"
    assert "/" not in r.json()["error"]["message"]
    assert (await api.get(f"/v1/instances/{iid}/checkpoints")).json()["data"] == []
    assert node_layers(platform) == layers_before
    assert (await api.get(f"/v1/instances/{iid}")).json()["status"] == "running"
    assert (await sh(api, iid, "cat /data/sub/tag")).strip() == "x"


async def test_deleting_checkpoints_and_instances_leaves_no_layer(platform):
    from tests.node.layer_helpers import settled_store_used, store_used

    api = platform.api
    empty = store_used(platform.node.driver)
    iid = (await create_running(api))["id"]
    await fill(api, iid, "a")
    await sh(api, iid, "head -c 20000000 /dev/urandom > /data/big")
    a = (await api.post(f"/v1/instances/{iid}/checkpoints", json={"name": "a"})).json()
    b = (await api.post(f"/v1/instances/{iid}/checkpoints", json={"name": "b"})).json()
    c = (await api.post(f"/v1/instances/{iid}/checkpoints", json={"name": "c"})).json()
    assert len(node_layers(platform)) == 3
    r = await api.delete(f"/v1/instances/{iid}/checkpoints/{b['id']}")
    assert r.status_code == 204
    # the tree heals: c now hangs from a
    healed = (await api.get(f"/v1/instances/{iid}/checkpoints/{c['id']}")).json()
    assert healed["parent_id"] == a["id"]
    assert (await api.get(f"/v1/instances/{iid}/checkpoints/{b['id']}")).status_code == 404
    await wait_for(lambda: len(node_layers(platform)) == 2, what="layer of b deleted")

    assert (await api.delete(f"/v1/instances/{iid}")).status_code == 202
    await wait_status(api, iid, "gone")
    await wait_for(lambda: node_layers(platform) == set(), what="all layers deleted")
    assert platform.node.driver.list_owned() == set()
    # the space comes back (20 MB written, captured three times)
    used = await settled_store_used(platform.node.driver, below=empty + 4_000_000)
    assert used < empty + 4_000_000, (empty, used)


async def test_checkpoint_states_and_cross_org_404(platform, compute_settings, run_jobs):
    api = platform.api
    iid = (await create_running(api))["id"]
    ckpt = (await api.post(f"/v1/instances/{iid}/checkpoints", json={})).json()
    other, other_browser, _ = await signed_in(
        platform.url, "intruder@example.com", compute_settings, run_jobs
    )
    try:
        for method, path, body in [
            ("POST", f"/v1/instances/{iid}/checkpoints", {}),
            ("GET", f"/v1/instances/{iid}/checkpoints", None),
            ("GET", f"/v1/instances/{iid}/checkpoints/{ckpt['id']}", None),
            ("DELETE", f"/v1/instances/{iid}/checkpoints/{ckpt['id']}", None),
            ("POST", f"/v1/instances/{iid}/rollback", {"checkpoint_id": ckpt["id"]}),
        ]:
            r = await other.request(method, path, json=body)
            assert r.status_code == 404, (method, path, r.text)
            error_code(r)
    finally:
        await other.aclose()
        await other_browser.aclose()
    for bad in ("ckpt_nope", "snap_01jabcdefghjkmnpqrstvwxyz0"):
        r = await api.get(f"/v1/instances/{iid}/checkpoints/{bad}")
        assert r.status_code == 404
        r = await api.post(f"/v1/instances/{iid}/rollback", json={"checkpoint_id": bad})
        assert r.status_code == 404
    # a stopped instance checkpoints and rolls back, staying stopped
    await api.post(f"/v1/instances/{iid}/files", json={"path": "/data/x", "content": "1"})
    s1 = (await api.post(f"/v1/instances/{iid}/checkpoints", json={})).json()
    await api.post(f"/v1/instances/{iid}/files", json={"path": "/data/x", "content": "2"})
    assert (await api.delete(f"/v1/instances/{iid}/vm")).status_code == 202
    await wait_status(api, iid, "stopped")
    r = await api.post(f"/v1/instances/{iid}/rollback", json={"checkpoint_id": s1["id"]})
    assert r.status_code == 200 and r.json()["processes_restarted"] is False
    assert r.json()["instance"]["status"] == "stopped"
    assert (await api.post(f"/v1/instances/{iid}/vm")).status_code == 202
    await wait_status(api, iid, "running")
    assert (await sh(api, iid, "cat /data/x")) == "1"
