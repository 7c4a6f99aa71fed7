import asyncio
import uuid

import pytest

from forkyard.node.drivers.base import InstanceInfo
from forkyard.node.drivers.sandbox import InstanceExists

from .layer_helpers import cleanup, store_used, tree_hash

pytestmark = pytest.mark.sandbox


async def test_forks_diverge_independently(driver, make_spec):
    parent = make_spec(disk_mb=512)
    await driver.start(parent)
    await driver.exec(parent.instance_id, "mkdir -p /root/work && echo base > /root/work/f")
    await driver.exec(parent.instance_id, "nohup sleep 1000 >/dev/null 2>&1 &")
    h = await tree_hash(driver, parent.instance_id)
    a, b = make_spec(memory_mb=128), make_spec(memory_mb=128)
    fork_layer = f"f-{uuid.uuid4().hex[:10]}"
    kids: list[str] = []
    try:
        results = await driver.fork(parent.instance_id, [a, b], layer_id=fork_layer)
        assert all(isinstance(r, InstanceInfo) for r in results)
        kids = [a.instance_id, b.instance_id]
        assert [r.origin for r in results if isinstance(r, InstanceInfo)] == [fork_layer] * 2
        assert driver.state(parent.instance_id) == "running"
        # The parent kept its processes; children start fresh on the same filesystem.
        assert (await driver.exec(parent.instance_id, "pgrep -c sleep")).stdout == b"1\n"
        for kid in kids:
            assert await tree_hash(driver, kid) == h
            assert (await driver.exec(kid, "hostname")).stdout.decode().strip() == kid
        spec_a = driver.load_spec(a.instance_id)
        assert spec_a is not None and spec_a.memory_mb == 128 and spec_a.disk_mb == 512

        await driver.write_file(a.instance_id, "/root/work/f", b"from a")
        await driver.write_file(b.instance_id, "/root/work/only-b", b"b")
        await driver.write_file(parent.instance_id, "/root/work/only-parent", b"p")
        assert await driver.read_file(a.instance_id, "/root/work/f") == b"from a"
        assert await driver.read_file(b.instance_id, "/root/work/f") == b"base\n"
        assert await driver.read_file(parent.instance_id, "/root/work/f") == b"base\n"
        for who, path in [
            (a.instance_id, "only-b"),
            (parent.instance_id, "only-b"),
            (a.instance_id, "only-parent"),
            (b.instance_id, "only-parent"),
        ]:
            assert (await driver.exec(who, f"test -e /root/work/{path}")).exit_code == 1
        # Children do not depend on the fork layer: it can go at once.
        await driver.delete_layer(fork_layer)
        await driver.stop(a.instance_id)
        await driver.start(spec_a)
        assert await driver.read_file(a.instance_id, "/root/work/f") == b"from a"
    finally:
        await cleanup(driver, [parent.instance_id, *kids], [fork_layer])


async def test_a_child_that_cannot_start_is_reported_and_leaves_nothing(driver, make_spec):
    parent, ok, taken = make_spec(), make_spec(), make_spec()
    await asyncio.gather(driver.start(parent), driver.start(taken))
    bad_image = make_spec()
    layer = f"f-{uuid.uuid4().hex[:10]}"
    try:
        await driver.write_file(taken.instance_id, "/root/mine", b"keep")
        results = await driver.fork(parent.instance_id, [ok, taken], layer_id=layer)
        assert isinstance(results[0], InstanceInfo)
        assert isinstance(results[1], InstanceExists)
        # The existing instance was not touched.
        assert await driver.read_file(taken.instance_id, "/root/mine") == b"keep"
        # A child whose boot fails is cleaned up completely.
        await driver.exec(parent.instance_id, "rm -f /usr/bin/python3*")
        layer2 = f"f-{uuid.uuid4().hex[:10]}"
        results = await driver.fork(parent.instance_id, [bad_image], layer_id=layer2)
        assert isinstance(results[0], Exception)
        assert driver.state(bad_image.instance_id) == "absent"
        assert bad_image.instance_id not in driver.list_owned()
        await driver.delete_layer(layer2)
    finally:
        await cleanup(driver, [parent.instance_id, ok.instance_id, taken.instance_id], [layer])


async def test_idle_forks_cost_almost_no_disk(driver, make_spec):
    parent = make_spec(disk_mb=512)
    await driver.start(parent)
    await driver.exec(parent.instance_id, "head -c 50000000 /dev/urandom > /root/data")
    layer = f"f-{uuid.uuid4().hex[:10]}"
    kids = [make_spec(memory_mb=64) for _ in range(5)]
    try:
        await driver.checkpoint(parent.instance_id, f"{layer}-warm")
        before = store_used(driver)
        results = await driver.fork(parent.instance_id, kids, layer_id=layer)
        assert all(isinstance(r, InstanceInfo) for r in results)
        per_fork = (store_used(driver) - before) / len(kids)
        assert per_fork < 2**20, per_fork  # the bench prints the real figure
    finally:
        await cleanup(
            driver,
            [parent.instance_id, *(k.instance_id for k in kids)],
            [layer, f"{layer}-warm"],
        )
