"""Recursive file watching (guest/watch.py) as a watcher sees it when directories move: the
agent runs as a real process on the host and watches a temporary directory."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from forkyard.node.agent_sessions import watch


async def _next_events(events: AsyncIterator[dict[str, Any]], until: str) -> list[dict[str, Any]]:
    """Events up to and including the first whose path ends with `until`."""
    got = []
    async with asyncio.timeout(10):
        async for event in events:
            got.append(event)
            if event["path"].endswith(until):
                return got
    raise AssertionError(f"the watch ended before {until}: {got}")


def _sh(command: str, cwd: Path) -> None:
    subprocess.run(["sh", "-c", command], cwd=cwd, check=True)


async def test_a_moved_directory_is_watched_under_its_new_name(agent, tmp_path: Path) -> None:
    tree, outside = tmp_path / "tree", tmp_path / "outside"
    (tree / "a" / "x").mkdir(parents=True)
    (outside / "y").mkdir(parents=True)
    events = watch(agent, str(tree), recursive=True)
    try:
        assert (await anext(events))["type"] == "ready"

        # Within the tree: changes below the moved directory carry its new path.
        _sh("mv a b && touch b/x/one", tree)
        got = await _next_events(events, "/one")
        assert {"type": "moved", "path": f"{tree}/b", "from": f"{tree}/a", "is_dir": True} in got
        assert got[-1] == {"type": "created", "path": f"{tree}/b/x/one", "is_dir": False}

        # Out of the tree: it is gone for the watcher, and what happens to it there is not
        # reported under the name it had.
        _sh(f"mv b {outside}/b && touch {outside}/b/x/two && touch marker", tree)
        got = await _next_events(events, "/marker")
        assert {"type": "deleted", "path": f"{tree}/b", "is_dir": True} in got
        assert not [e for e in got if "two" in e["path"]], got

        # Moved back in, with a directory that never was in the tree: both are watched.
        _sh(f"mv {outside}/b b && mv {outside}/y b/x/y && touch b/x/three b/x/y/four", tree)
        got = await _next_events(events, "/four")
        assert {"type": "created", "path": f"{tree}/b", "is_dir": True} in got
        assert {"type": "created", "path": f"{tree}/b/x/three", "is_dir": False} in got
        assert got[-1] == {"type": "created", "path": f"{tree}/b/x/y/four", "is_dir": False}
    finally:
        await events.aclose()
