from __future__ import annotations

from tests.compute.conftest import create_running, signed_in, wait_status
from tests.compute.state_helpers import fill, node_layers, sh, tree, wait_for
from tests.helpers import error_code


async def test_forks_diverge_and_the_parent_keeps_running(platform):
    api = platform.api
    parent = await create_running(api, name="p", labels={"team": "a"})
    pid = parent["id"]
    await fill(api, pid, "base")
    await sh(api, pid, "nohup sleep 1000 >/dev/null 2>&1 &")
    base = await tree(api, pid)

    r = await api.post(
        f"/v1/instances/{pid}/fork",
        json={"count": 3, "name_prefix": "try", "overrides": {"env": {"IDEA": "x"}}},
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["parent_id"] == pid and len(body["children"]) == 3
    kids = [c["instance"] for c in body["children"]]
    assert all(c["error"] is None for c in body["children"])
    assert [k["name"] for k in kids] == ["try-1", "try-2", "try-3"]
    assert all(k["status"] == "running" for k in kids)
    assert all(k["labels"] == {"team": "a"} and k["env"]["IDEA"] == "x" for k in kids)

    # the parent kept running: its process survived the fork
    assert "sleep 1000" in await sh(api, pid, "ps -eo args")
    for k in kids:
        assert await tree(api, k["id"]) == base
    # each diverges on its own
    for n, k in enumerate(kids):
        await sh(api, k["id"], f"echo child{n} > /data/f1 && rm /data/f{n + 2}")
    await sh(api, pid, "echo parent > /data/f1")
    trees = {await tree(api, k["id"]) for k in kids} | {await tree(api, pid)}
    assert len(trees) == 4 and base not in trees
    assert (await sh(api, kids[0]["id"], "cat /data/f1")).strip() == "child0"
    assert (await sh(api, pid, "cat /data/f1")).strip() == "parent"
    # the fork layer is not kept: children are clones
    assert node_layers(platform) == set()

    for inst in [*kids, parent]:
        assert (await api.delete(f"/v1/instances/{inst['id']}")).status_code == 202
    for inst in [*kids, parent]:
        await wait_status(api, inst["id"], "gone")
    assert platform.node.driver.list_owned() == set()


async def test_fork_without_waiting_boots_children_in_jobs(platform):
    api = platform.api
    pid = (await create_running(api))["id"]
    await fill(api, pid, "at-call")
    at_call = await tree(api, pid)
    r = await api.post(f"/v1/instances/{pid}/fork", params={"wait": "false"}, json={"count": 2})
    assert r.status_code == 202, r.text
    kids = [c["instance"]["id"] for c in r.json()["children"]]
    assert all(c["instance"]["status"] == "provisioning" for c in r.json()["children"])
    await sh(api, pid, "echo later > /data/f1")  # after the call: not in the children
    for k in kids:
        await wait_status(api, k, "running")
        assert await tree(api, k) == at_call
    # once both booted the fork layer is released and deleted on the node
    await wait_for(lambda: node_layers(platform) == set(), what="fork layer deleted")


async def test_fork_quota_validation_and_cross_org(platform, compute_settings, run_jobs):
    api = platform.api
    pid = (await create_running(api))["id"]
    for bad in ({"count": 0}, {"count": 51}, {"count": 2, "overrides": {"memory_mb": 1}}):
        r = await api.post(f"/v1/instances/{pid}/fork", json=bad)
        assert r.status_code == 422, r.text
    # quota for all children up front: nothing is created
    r = await api.post(f"/v1/instances/{pid}/fork", json={"count": 50, "overrides": {"vcpus": 8}})
    assert r.status_code == 403 and error_code(r) == "quota_exceeded"
    assert len((await api.get("/v1/instances")).json()["data"]) == 1
    other, other_browser, _ = await signed_in(
        platform.url, "forker@example.com", compute_settings, run_jobs
    )
    try:
        r = await other.post(f"/v1/instances/{pid}/fork", json={"count": 1})
        assert r.status_code == 404
        error_code(r)
    finally:
        await other.aclose()
        await other_browser.aclose()
    r = await api.post("/v1/instances/inst_bad/fork", json={"count": 1})
    assert r.status_code == 404
