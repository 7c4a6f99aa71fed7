"""Helpers of the checkpoint, snapshot, fork and image tests (whole platform, real sandbox)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

TREE_HASH = "find /data -type f | LC_ALL=C sort | xargs -r sha256sum"


async def sh(api: httpx.AsyncClient, iid: str, command: str) -> str:
    r = await api.post(f"/v1/instances/{iid}/exec", json={"command": command})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body["exit_code"] == 0, body
    return str(body["stdout"])


async def tree(api: httpx.AsyncClient, iid: str) -> str:
    return await sh(api, iid, TREE_HASH)


async def fill(api: httpx.AsyncClient, iid: str, tag: str) -> None:
    await sh(
        api,
        iid,
        f"mkdir -p /data/sub && for i in 1 2 3 4 5; do echo {tag}-$i > /data/f$i; done && "
        f"head -c 2000000 /dev/urandom > /data/sub/blob && echo {tag} > /data/sub/tag",
    )


def node_layers(platform: Any) -> set[str]:
    return {x.layer_id for x in platform.node.driver.list_layers()}


async def wait_for(predicate: Any, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
