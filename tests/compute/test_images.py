from __future__ import annotations

from tests.compute.conftest import create_running, signed_in, wait_status
from tests.compute.state_helpers import node_layers, sh, wait_for
from tests.helpers import error_code


async def _image_settled(api, image_id: str) -> dict:
    body: dict = {}

    async def done() -> bool:
        nonlocal body
        body = (await api.get(f"/v1/base-images/{image_id}")).json()
        return body["status"] != "building"

    await wait_for(done, timeout=120, what=f"build of {image_id}")
    return body


async def test_platform_default_family(platform):
    api = platform.api
    default = (await api.get("/v1/base-images/default")).json()
    assert default["family"] == "default" and default["version"] == 1
    assert default["platform"] is True and default["current"] is True
    assert default["status"] == "ready"
    assert (await api.get("/v1/base-images/family/default")).json()["id"] == default["id"]
    versions = (await api.get("/v1/base-images/family/default/versions")).json()["data"]
    assert [v["id"] for v in versions] == [default["id"]]
    listed = (await api.get("/v1/base-images")).json()["data"]
    assert default["id"] in [i["id"] for i in listed]
    one = await api.get(f"/v1/base-images/{default['id']}")
    assert one.status_code == 200 and one.json()["logs"] == ""
    # platform images are staff-managed
    r = await api.delete(f"/v1/base-images/{default['id']}")
    assert r.status_code == 403 and error_code(r) == "forbidden"
    r = await api.post("/v1/base-images/family/default/rollback")
    assert r.status_code == 403
    r = await api.post(
        "/v1/images/prepare", json={"family": "x", "platform": True, "base_image": "default"}
    )
    assert r.status_code == 403
    assert (await api.get("/v1/base-images/family/nope")).status_code == 404
    assert (await api.get("/v1/base-images/family/nope/versions")).status_code == 404
    assert (await api.get("/v1/base-images/img_nope")).status_code == 404


async def test_build_promote_rollback_and_running_instances_keep_their_image(platform):
    api = platform.api
    r = await api.post(
        "/v1/images/prepare",
        json={
            "family": "tools",
            "base_image": "default",
            "commands": ["mkdir -p /opt/tool && echo v1 > /opt/tool/version", "echo built one"],
            "description": "first",
        },
    )
    assert r.status_code == 202, r.text
    v1 = r.json()
    assert v1["status"] == "building" and v1["version"] == 1 and v1["platform"] is False
    v1 = await _image_settled(api, v1["id"])
    assert v1["status"] == "ready", v1
    assert v1["progress"] == 100 and "built one" in v1["logs"] and "$ echo built one" in v1["logs"]
    # prepared is not current until promoted
    assert (await api.get("/v1/base-images/family/tools")).status_code == 404
    assert (await api.post("/v1/images/promote", json={"image_id": v1["id"]})).status_code == 200
    assert (await api.get("/v1/base-images/family/tools")).json()["id"] == v1["id"]

    old = await create_running(api, image="tools")
    assert (await sh(api, old["id"], "cat /opt/tool/version")).strip() == "v1"

    # v2 is built on v1 (stacked on its layer)
    r = await api.post(
        "/v1/images/prepare",
        json={
            "family": "tools",
            "base_image": "tools",
            "commands": ["echo v2 > /opt/tool/version"],
        },
    )
    v2 = await _image_settled(api, r.json()["id"])
    assert v2["status"] == "ready" and v2["version"] == 2
    await api.post("/v1/images/promote", json={"image_id": v2["id"]})
    new = await create_running(api, image="tools")
    assert (await sh(api, new["id"], "cat /opt/tool/version")).strip() == "v2"
    # the running instance keeps its image, across a restart too
    assert (await api.post(f"/v1/instances/{old['id']}/vm/restart")).status_code == 200
    assert (await sh(api, old["id"], "cat /opt/tool/version")).strip() == "v1"

    versions = (await api.get("/v1/base-images/family/tools/versions")).json()["data"]
    assert [(v["version"], v["current"]) for v in versions] == [(2, True), (1, False)]
    r = await api.post("/v1/base-images/family/tools/rollback")
    assert r.status_code == 200 and r.json()["id"] == v1["id"] and r.json()["current"] is True
    r = await api.post("/v1/base-images/family/tools/rollback")
    assert r.status_code == 409 and error_code(r) == "no_previous_version"

    # a version in use by an instance cannot be deleted; once it is gone it can
    r = await api.delete(f"/v1/base-images/{v2['id']}")
    assert r.status_code == 409 and new["id"] in r.json()["error"]["details"]["instances"]
    for inst in (old, new):
        await api.delete(f"/v1/instances/{inst['id']}")
        await wait_status(api, inst["id"], "gone")
    assert (await api.delete(f"/v1/base-images/{v2['id']}")).status_code == 204
    r = await api.delete(f"/v1/base-images/{v1['id']}")
    assert r.status_code == 409  # current
    # v1's layer stays (the current image); v2's went (it stacked on v1's)
    await wait_for(lambda: len(node_layers(platform)) == 1, what="v2 layer deleted")


async def test_failed_and_aborted_builds(platform):
    api = platform.api
    r = await api.post(
        "/v1/images/prepare",
        json={"family": "broken", "base_image": "default", "commands": ["echo oops >&2; exit 4"]},
    )
    failed = await _image_settled(api, r.json()["id"])
    assert failed["status"] == "failed" and "exited 4" in failed["error"]
    assert "oops" in failed["logs"]
    r = await api.post("/v1/images/promote", json={"image_id": failed["id"]})
    assert r.status_code == 409 and error_code(r) == "image_not_ready"

    r = await api.post(
        "/v1/images/prepare",
        json={"family": "slow", "base_image": "default", "commands": ["sleep 2", "echo after"]},
    )
    slow = r.json()
    r = await api.post("/v1/images/abort", json={"image_id": slow["id"]})
    assert r.status_code == 200 and r.json()["status"] == "aborted"
    settled = await _image_settled(api, slow["id"])
    assert settled["status"] == "aborted"
    r = await api.post("/v1/images/abort", json={"image_id": slow["id"]})
    assert r.status_code == 409

    async def sandboxes_gone() -> bool:
        return platform.node.driver.list_owned() == set()

    await wait_for(sandboxes_gone, timeout=60, what="build sandboxes removed")
    assert node_layers(platform) == set()

    for bad in (
        {"family": "Bad Name", "base_image": "default"},
        {"family": "x"},
        {"family": "x", "base_image": "default", "suite": "bookworm"},
    ):
        r = await api.post("/v1/images/prepare", json=bad)
        assert r.status_code == 422, r.text
    r = await api.post(
        "/v1/images/prepare", json={"family": "x", "base_image": "default", "packages": ["Vim"]}
    )
    assert r.status_code == 422 and error_code(r) == "validation_failed"


async def test_images_cross_org(platform, compute_settings, run_jobs):
    api = platform.api
    r = await api.post(
        "/v1/images/prepare",
        json={"family": "private", "base_image": "default", "commands": ["true"]},
    )
    mine = await _image_settled(api, r.json()["id"])
    await api.post("/v1/images/promote", json={"image_id": mine["id"]})
    other, other_browser, _ = await signed_in(
        platform.url, "neighbour@example.com", compute_settings, run_jobs
    )
    try:
        for method, path, body in [
            ("GET", f"/v1/base-images/{mine['id']}", None),
            ("DELETE", f"/v1/base-images/{mine['id']}", None),
            ("GET", "/v1/base-images/family/private", None),
            ("GET", "/v1/base-images/family/private/versions", None),
            ("POST", "/v1/base-images/family/private/rollback", None),
            ("POST", "/v1/images/promote", {"image_id": mine["id"]}),
            ("POST", "/v1/images/abort", {"image_id": mine["id"]}),
            ("POST", "/v1/images/prepare", {"family": "y", "base_image": mine["id"]}),
        ]:
            r = await other.request(method, path, json=body)
            assert r.status_code == 404, (method, path, r.text)
            error_code(r)
        ids = [i["id"] for i in (await other.get("/v1/base-images")).json()["data"]]
        assert mine["id"] not in ids
        # the platform default is everyone's
        assert (await other.get("/v1/base-images/default")).status_code == 200
    finally:
        await other.aclose()
        await other_browser.aclose()
