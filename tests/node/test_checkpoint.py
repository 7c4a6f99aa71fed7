import asyncio
import os
import subprocess
import uuid

import pytest

from forkyard.node import storage
from forkyard.node.layers import InvalidLayerId, LayerExists

from .layer_helpers import cleanup, tree_hash

pytestmark = pytest.mark.sandbox

MAKE_TREE = (
    "mkdir -p /root/work/a/b /root/work/gone && cd /root/work && "
    "head -c 3000000 /dev/urandom > a/b/blob && echo hello > a/greet && ln -s a/greet link && "
    "echo bye > gone/x && chmod 600 a/greet && mkfifo pipe && rm /etc/issue"
)
MUTATE = (
    "cd /root/work && echo changed > a/greet && rm -rf gone && echo new > a/new && "
    "head -c 1000 /dev/urandom >> a/b/blob && rm link && echo back > /etc/issue"
)


def lid() -> str:
    return f"l-{uuid.uuid4().hex[:10]}"


async def test_checkpoint_mutate_rollback_restores_the_tree(driver, make_spec):
    assert driver.storage_mode() == "reflink"
    spec = make_spec(disk_mb=512)
    await driver.start(spec)
    layer = lid()
    try:
        assert (await driver.exec(spec.instance_id, MAKE_TREE)).exit_code == 0
        before = await tree_hash(driver, spec.instance_id)
        info = await driver.checkpoint(spec.instance_id, layer)
        assert info.source_instance == spec.instance_id and info.parent is None
        assert info.filesystem == "ext4" and info.lower == (spec.image,)
        await driver.exec(spec.instance_id, "nohup sleep 1000 >/dev/null 2>&1 &")
        assert (await driver.exec(spec.instance_id, MUTATE)).exit_code == 0
        assert await tree_hash(driver, spec.instance_id) != before

        new = await driver.rollback(spec.instance_id, layer)
        assert new is not None and new.origin == layer
        assert await tree_hash(driver, spec.instance_id) == before
        r = await driver.exec(spec.instance_id, "test -e /etc/issue; echo $?; pgrep -c sleep")
        assert r.stdout.split()[0] == b"1"  # the image's deleted file stays deleted
        assert r.stdout.split()[1] == b"0"  # processes restarted
        # The rolled-back instance keeps working and persists across stop/start.
        await driver.write_file(spec.instance_id, "/root/after", b"x")
        await driver.stop(spec.instance_id)
        await driver.start(spec)
        assert await driver.read_file(spec.instance_id, "/root/after") == b"x"
    finally:
        await cleanup(driver, [spec.instance_id], [layer])


async def test_small_disk_keeps_its_limit_after_rollback(driver, make_spec):
    spec = make_spec(disk_mb=64)
    await driver.start(spec)
    layer = lid()
    try:
        await driver.exec(spec.instance_id, MAKE_TREE)
        before = await tree_hash(driver, spec.instance_id)
        info = await driver.checkpoint(spec.instance_id, layer)
        assert info.filesystem == "ext4"
        await driver.exec(spec.instance_id, MUTATE)
        await driver.rollback(spec.instance_id, layer)
        assert await tree_hash(driver, spec.instance_id) == before
        # The disk limit still holds after a rollback (the clone has the same size).
        r = await driver.exec(spec.instance_id, "dd if=/dev/zero of=/big bs=1M count=200")
        assert b"No space left on device" in r.stderr
    finally:
        await cleanup(driver, [spec.instance_id], [layer])


async def test_rollback_can_be_undone(driver, make_spec):
    spec = make_spec()
    await driver.start(spec)
    a, b = lid(), lid()
    try:
        await driver.exec(spec.instance_id, MAKE_TREE)
        h1 = await tree_hash(driver, spec.instance_id)
        await driver.checkpoint(spec.instance_id, a)
        await driver.exec(spec.instance_id, MUTATE)
        h2 = await tree_hash(driver, spec.instance_id)
        # What the controller does: keep the pre-rollback state as a checkpoint.
        info_b = await driver.checkpoint(spec.instance_id, b)
        assert info_b.parent == a
        await driver.rollback(spec.instance_id, a)
        assert await tree_hash(driver, spec.instance_id) == h1
        await driver.rollback(spec.instance_id, b)
        assert await tree_hash(driver, spec.instance_id) == h2
        assert driver.origin(spec.instance_id) == b
    finally:
        await cleanup(driver, [spec.instance_id], [a, b])


SQLITE_WRITER = """
import sqlite3, time
db = sqlite3.connect('/root/db.sqlite')
db.execute('create table if not exists t (id integer primary key, v blob)')
db.commit()
open('/root/writer.started', 'w').close()
while True:
    db.execute('insert into t (v) values (randomblob(2000))')
    db.commit()
    time.sleep(0.001)  # still hundreds of commits a second, but a reader can get the lock
"""


async def test_sqlite_written_during_checkpoint_opens_cleanly(driver, make_spec):
    spec = make_spec(disk_mb=512)
    await driver.start(spec)
    layer = lid()
    try:
        await driver.write_file(spec.instance_id, "/root/writer.py", SQLITE_WRITER)
        await driver.exec(spec.instance_id, "nohup python3 /root/writer.py >/dev/null 2>&1 &")
        for _ in range(100):
            if (await driver.exec(spec.instance_id, "test -e /root/writer.started")).exit_code == 0:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        await driver.checkpoint(spec.instance_id, layer)
        await asyncio.sleep(0.3)  # the writer goes on after the thaw
        count_after = await _count(driver, spec.instance_id)
        await driver.rollback(spec.instance_id, layer)
        r = await driver.exec(
            spec.instance_id,
            [
                "python3",
                "-c",
                "import sqlite3; d = sqlite3.connect('/root/db.sqlite'); "
                "print(d.execute('pragma integrity_check').fetchone()[0]); "
                "print(d.execute('select count(*) from t').fetchone()[0])",
            ],
        )
        ok, rows = r.stdout.decode().split()
        assert ok == "ok"
        assert 0 < int(rows) <= count_after
    finally:
        await cleanup(driver, [spec.instance_id], [layer])


async def _count(driver, instance_id: str) -> int:
    r = await driver.exec(
        instance_id,
        [
            "python3",
            "-c",
            "import sqlite3; print(sqlite3.connect('/root/db.sqlite', timeout=60)"
            ".execute('select count(*) from t').fetchone()[0])",
        ],
    )
    return int(r.stdout)


def _no_partial_layer(driver, layer_id: str) -> None:
    assert not driver.layers.path(layer_id).exists()
    assert driver.layers.leftovers() == []
    assert all(x.layer_id != layer_id for x in driver.list_layers())


async def test_failed_checkpoints_leave_the_instance_running_and_no_layer(
    driver, make_spec, tmp_path
):
    spec = make_spec()
    await driver.start(spec)
    good = lid()
    try:
        await driver.write_file(spec.instance_id, "/root/f", b"1")
        with pytest.raises(InvalidLayerId):
            await driver.checkpoint(spec.instance_id, "../escape")
        await driver.checkpoint(spec.instance_id, good)
        with pytest.raises(LayerExists):
            await driver.checkpoint(spec.instance_id, good)
        assert driver.get_layer(good).source_instance == spec.instance_id

        # Midway: the processes are frozen and the filesystem flushed, then the clone fails
        # (the disk image's path now names a file on another filesystem: EXDEV). Processes
        # must be thawed and the partial capture removed.
        assert driver.storage_mode() == "reflink"
        disk = driver.disk_image(spec.instance_id)
        elsewhere = tmp_path / "not-the-disk.img"
        elsewhere.write_bytes(b"x" * 4096)
        subprocess.run(["mount", "--bind", str(elsewhere), str(disk)], check=True)
        bad = lid()
        try:
            with pytest.raises(OSError):
                await driver.checkpoint(spec.instance_id, bad)
            freezer = driver.cgroup(spec.instance_id).path("freezer") / "freezer.state"
            assert freezer.read_text().strip() == "THAWED"
        finally:
            subprocess.run(["umount", str(disk)], check=True)
        _no_partial_layer(driver, bad)

        # The destination is unwritable (immutable layers dir: even root cannot create in it).
        subprocess.run(["chattr", "+i", str(driver.layers.layers_dir)], check=True)
        try:
            with pytest.raises(OSError):
                await driver.checkpoint(spec.instance_id, bad)
        finally:
            subprocess.run(["chattr", "-i", str(driver.layers.layers_dir)], check=True)
        _no_partial_layer(driver, bad)

        assert driver.state(spec.instance_id) == "running"
        assert (await driver.exec(spec.instance_id, "cat /root/f")).stdout == b"1"
        await driver.write_file(spec.instance_id, "/root/g", b"2")
        assert driver.origin(spec.instance_id) == good

        # Someone else froze the filesystem: the image is clean as it is; the capture must not
        # thaw what it did not freeze.
        mnt = driver.instance_dir(spec.instance_id) / "disk"
        storage.freeze_fs(mnt)
        try:
            frozen_by_other = lid()
            await driver.checkpoint(spec.instance_id, frozen_by_other)
            assert storage.thaw_fs(mnt), "the capture thawed a filesystem it had not frozen"
        finally:
            storage.thaw_fs(mnt)
        await driver.delete_layer(frozen_by_other)
    finally:
        await cleanup(driver, [spec.instance_id], [good])


async def test_stopped_instance_checkpoints_and_rolls_back_stopped(driver, make_spec):
    spec = make_spec()
    await driver.start(spec)
    layer = lid()
    try:
        await driver.write_file(spec.instance_id, "/root/v", b"one")
        await driver.stop(spec.instance_id)
        await driver.checkpoint(spec.instance_id, layer)
        await driver.start(spec)
        await driver.write_file(spec.instance_id, "/root/v", b"two")
        await driver.stop(spec.instance_id)
        assert await driver.rollback(spec.instance_id, layer) is None
        assert driver.state(spec.instance_id) == "stopped"
        await driver.start(spec)
        assert await driver.read_file(spec.instance_id, "/root/v") == b"one"
    finally:
        await cleanup(driver, [spec.instance_id], [layer])


def test_immutable_flag_tool_present():
    assert os.path.exists("/usr/bin/chattr") or os.path.exists("/bin/chattr")
