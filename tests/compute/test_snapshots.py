from __future__ import annotations

from tests.compute.conftest import create_running, signed_in, wait_status
from tests.compute.state_helpers import fill, node_layers, sh, tree, wait_for
from tests.helpers import error_code


async def test_snapshot_restore_in_place_and_into_a_new_instance(platform):
    api = platform.api
    src = (await create_running(api, name="src"))["id"]
    await fill(api, src, "snap")
    at_snapshot = await tree(api, src)
    r = await api.post(
        f"/v1/instances/{src}/snapshots", json={"name": "golden", "description": "ready"}
    )
    assert r.status_code == 201, r.text
    snap = r.json()
    assert snap["id"].startswith("snap_") and snap["instance_id"] == src
    assert snap["server_id"] and snap["data_bytes"] > 0
    listed = (await api.get(f"/v1/instances/{src}/snapshots")).json()["data"]
    assert [s["id"] for s in listed] == [snap["id"]]

    await sh(api, src, "rm -r /data/sub && echo x > /data/new")
    r = await api.post(f"/v1/instances/{src}/snapshots/{snap['id']}/restore", json={})
    assert r.status_code == 200, r.text
    assert (
        r.json()["new_instance"] is False and r.json()["checkpoint"]["reason"] == "before_restore"
    )
    assert r.json()["processes_restarted"] is True
    assert await tree(api, src) == at_snapshot

    r = await api.post(
        f"/v1/instances/{src}/snapshots/{snap['id']}/restore",
        json={"new_instance": {"name": "copy", "memory_mb": 256, "labels": {"k": "v"}}},
    )
    assert r.status_code == 202, r.text
    copy = r.json()["instance"]
    assert copy["name"] == "copy" and copy["status"] == "provisioning"
    await wait_status(api, copy["id"], "running")
    assert await tree(api, copy["id"]) == at_snapshot

    # the snapshot outlives its instance
    assert (await api.delete(f"/v1/instances/{src}")).status_code == 202
    await wait_status(api, src, "gone")
    r = await api.get(f"/v1/instances/{copy['id']}/snapshots/{snap['id']}")
    assert r.status_code == 200 and r.json()["instance_id"] is None

    # deleting it reclaims its layer; the copy does not depend on it (its disk is a clone)
    r = await api.delete(f"/v1/instances/{copy['id']}/snapshots/{snap['id']}")
    assert r.status_code == 204, r.text
    await wait_for(lambda: node_layers(platform) == set(), what="snapshot layer deleted")
    assert (await sh(api, copy["id"], "cat /data/sub/tag")).strip() == "snap"


async def test_snapshot_delete_refused_while_an_image_depends_on_it(platform):
    api = platform.api
    src = (await create_running(api))["id"]
    await sh(api, src, "mkdir -p /data && echo from-image > /data/marker")
    snap = (await api.post(f"/v1/instances/{src}/snapshots", json={"name": "img"})).json()
    r = await api.post("/v1/images/prepare", json={"family": "mine", "from_snapshot": snap["id"]})
    assert r.status_code == 202, r.text
    image_id = r.json()["id"]

    async def ready() -> bool:
        return (await api.get(f"/v1/base-images/{image_id}")).json()["status"] == "ready"

    await wait_for(ready, what="image ready")
    r = await api.delete(f"/v1/instances/{src}/snapshots/{snap['id']}")
    assert r.status_code == 409 and error_code(r) == "snapshot_in_use"
    assert r.json()["error"]["details"]["images"] == [image_id]
    assert image_id in r.json()["error"]["message"]

    # an instance on that image stacks on the snapshot's layer
    assert (await api.post("/v1/images/promote", json={"image_id": image_id})).status_code == 200
    user = await create_running(api, image="mine")
    assert (await sh(api, user["id"], "cat /data/marker")).strip() == "from-image"
    assert (await api.delete(f"/v1/base-images/{image_id}")).status_code == 409  # current
    r = await api.delete(f"/v1/instances/{src}/snapshots/{snap['id']}")
    assert r.status_code == 409 and user["id"] in r.json()["error"]["details"]["instances"]


async def test_snapshot_cross_org_404(platform, compute_settings, run_jobs):
    api = platform.api
    src = (await create_running(api))["id"]
    snap = (await api.post(f"/v1/instances/{src}/snapshots", json={"name": "s"})).json()
    other, other_browser, _ = await signed_in(
        platform.url, "snoop@example.com", compute_settings, run_jobs
    )
    try:
        mine = await create_running(other)
        for method, path, body in [
            ("POST", f"/v1/instances/{src}/snapshots", {"name": "x"}),
            ("GET", f"/v1/instances/{src}/snapshots", None),
            ("GET", f"/v1/instances/{src}/snapshots/{snap['id']}", None),
            ("GET", f"/v1/instances/{mine['id']}/snapshots/{snap['id']}", None),
            ("DELETE", f"/v1/instances/{src}/snapshots/{snap['id']}", None),
            ("POST", f"/v1/instances/{src}/snapshots/{snap['id']}/restore", {}),
            (
                "POST",
                f"/v1/instances/{mine['id']}/snapshots/{snap['id']}/restore",
                {"new_instance": {}},
            ),
        ]:
            r = await other.request(method, path, json=body)
            assert r.status_code == 404, (method, path, r.text)
            error_code(r)
        r = await other.post(
            "/v1/images/prepare", json={"family": "f", "from_snapshot": snap["id"]}
        )
        assert r.status_code == 404
    finally:
        await other.aclose()
        await other_browser.aclose()
    r = await api.post(f"/v1/instances/{src}/snapshots", json={})
    assert r.status_code == 422
