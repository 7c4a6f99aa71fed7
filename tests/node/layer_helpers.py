"""Shared helpers of the layer/checkpoint/fork tests (real sandboxes)."""

from __future__ import annotations

import os

TREE_HASH = (
    "cd /root/work && "
    "{ find . -printf '%p %y %m %s %l\\n' | LC_ALL=C sort; "
    "find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum; } | sha256sum"
)


async def tree_hash(driver, instance_id: str) -> str:
    r = await driver.exec(instance_id, TREE_HASH)
    assert r.exit_code == 0, r.stderr
    return r.stdout.decode().split()[0]


def store_used(driver) -> int:
    os.sync()
    st = os.statvfs(driver.store_dir)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


async def settled_store_used(driver, below: int, timeout: float = 10.0) -> int:
    """Store usage once it drops below `below` (deleted files are freed asynchronously: the loop
    device lets go of a disk image after umount, XFS frees unlinked inodes in the background)."""
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while True:
        used = store_used(driver)
        if used < below or time.monotonic() > deadline:
            return used
        await asyncio.sleep(0.1)


async def cleanup(driver, instances, layers) -> None:
    for i in instances:
        await driver.destroy(i)
    for lid in layers:
        if driver.layers.exists(lid):
            await driver.delete_layer(lid)
