import json
import uuid
from dataclasses import replace

import pytest

from forkyard.node.layers import LayerInUse, LayerNotFound
from forkyard.node.reconcile import reconcile

from .layer_helpers import cleanup, settled_store_used, store_used

pytestmark = pytest.mark.sandbox


def lid() -> str:
    return f"l-{uuid.uuid4().hex[:10]}"


async def test_layers_stack_as_lowerdirs_and_refuse_deletion_while_used(driver, make_spec):
    src = make_spec()
    await driver.start(src)
    base, top = lid(), lid()
    stacked = make_spec()
    try:
        await driver.write_file(src.instance_id, "/root/base.txt", b"base")
        await driver.checkpoint(src.instance_id, base)
        # A new instance stacks the layer under its own (empty) writable layer: zero copy.
        upper = await driver.layers.mount(base)
        layer = driver.get_layer(base)
        spec = replace(stacked, layers=(upper, *layer.lower[:-1]), image=layer.lower[-1])
        info = await driver.start(spec)
        assert info.layers == (base,)
        assert await driver.read_file(stacked.instance_id, "/root/base.txt") == b"base"
        await driver.write_file(stacked.instance_id, "/root/top.txt", b"top")
        # A checkpoint of it records the stack below it; its parent is the stack's top.
        t = await driver.checkpoint(stacked.instance_id, top)
        assert t.lower == (upper, src.image)
        meta = json.loads((driver.layers.path(top) / "meta.json").read_text())
        assert meta["lower"][0] == str(upper)

        with pytest.raises(LayerInUse) as e:
            await driver.delete_layer(base)
        assert e.value.instances == [stacked.instance_id] and e.value.layers == [top]

        usage = driver.layer_usage()
        assert usage["mode"] == "reflink" and usage["store"]["free_bytes"] > 0
        by_id = {x["layer_id"]: x for x in usage["layers"]}
        assert by_id[base]["referenced_by"] == {"instances": [stacked.instance_id], "layers": [top]}
        assert by_id[base]["mounted"] is True
        assert by_id[top]["referenced_by"] == {"instances": [], "layers": []}
        inst = {x["instance_id"]: x for x in usage["instances"]}
        assert inst[stacked.instance_id]["layers"] == [base]
        assert inst[src.instance_id]["origin"] == base

        # Rolling back the stacked instance onto `top` keeps `base` below it.
        await driver.write_file(stacked.instance_id, "/root/top.txt", b"changed")
        await driver.rollback(stacked.instance_id, top)
        assert await driver.read_file(stacked.instance_id, "/root/top.txt") == b"top"
        assert await driver.read_file(stacked.instance_id, "/root/base.txt") == b"base"

        # The sweeper keeps what is referenced (directly or below a kept layer) ...
        await driver.destroy(stacked.instance_id)
        assert await driver.sweep_layers(keep={top}) == set()
        # ... and removes the rest, bottom included once nothing stands on it.
        assert await driver.sweep_layers(keep=set()) == {base, top}
        with pytest.raises(LayerNotFound):
            driver.get_layer(base)
        assert list(driver.layers.layers_dir.iterdir()) == []
    finally:
        await cleanup(driver, [src.instance_id, stacked.instance_id], [top, base])


async def test_deleting_instances_and_layers_reclaims_space(driver, make_spec):
    baseline = store_used(driver)
    parent = make_spec(disk_mb=512)
    kid = make_spec()
    a, b = lid(), lid()
    await driver.start(parent)
    await driver.exec(parent.instance_id, "head -c 60000000 /dev/urandom > /root/blob")
    await driver.checkpoint(parent.instance_id, a)
    await driver.exec(parent.instance_id, "head -c 30000000 /dev/urandom > /root/blob2")
    await driver.fork(parent.instance_id, [kid], layer_id=b)
    await driver.exec(kid.instance_id, "head -c 20000000 /dev/urandom > /root/blob3")
    assert store_used(driver) - baseline > 100_000_000
    await driver.destroy(parent.instance_id)
    await driver.delete_layer(a)
    assert store_used(driver) - baseline > 100_000_000  # still shared by b and the child
    await driver.destroy(kid.instance_id)
    await driver.delete_layer(b)
    limit = baseline + 2 * 2**20
    assert await settled_store_used(driver, limit) < limit
    assert list(driver.layers.layers_dir.iterdir()) == []
    assert list(driver.layers.disks_dir.iterdir()) == []


async def test_reconcile_sweeps_layers_and_partial_captures(driver, make_spec):
    spec = make_spec()
    await driver.start(spec)
    keep, drop = lid(), lid()
    try:
        await driver.checkpoint(spec.instance_id, keep)
        await driver.checkpoint(spec.instance_id, drop)
        partial = driver.layers.layers_dir / ".tmp-crashed-1234"
        partial.mkdir()
        (partial / "disk.img").write_bytes(b"half")
        report = await reconcile(driver, keep={spec.instance_id}, keep_layers={keep})
        assert report.removed_layers == {drop}
        assert not partial.exists()
        assert [x.layer_id for x in driver.list_layers()] == [keep]
        # Without keep_layers, reconcile leaves layers alone.
        report = await reconcile(driver, keep={spec.instance_id})
        assert report.removed_layers == set()
    finally:
        await cleanup(driver, [spec.instance_id], [keep, drop])
