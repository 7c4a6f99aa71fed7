"""Image builds on this node: the steps that need the Debian mirror (node/images.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from forkyard.node import contract as c
from forkyard.node import images as node_images
from forkyard.node.api.deps import Node

router = APIRouter(prefix="/node")

NDJSON = "application/x-ndjson"
BUILD_EVENTS: dict[int | str, dict[str, Any]] = {
    200: {"model": c.BuildEvent, "content": {NDJSON: {}}}
}


def _check_build_sandbox(instance_id: str) -> None:
    """Build steps are for the control plane's build sandboxes only."""
    if not instance_id.startswith("build-"):
        raise node_images.BuildStepFailed("only build sandboxes (build-...) take build steps")


@router.post(
    "/instances/{instance_id}/bootstrap", response_class=StreamingResponse, responses=BUILD_EVENTS
)
async def bootstrap(instance_id: str, body: c.BootstrapIn, node: Node) -> StreamingResponse:
    """Debootstrap a suite into a new build sandbox's disk (NDJSON events)."""
    _check_build_sandbox(instance_id)
    node_images.check_suite(body.suite)
    node_images.check_packages(body.packages)
    driver = node.driver
    step = node_images.event_stream(
        driver,
        instance_id,
        lambda emit: node_images.bootstrap_build_disk(
            driver,
            instance_id,
            suite=body.suite,
            packages=body.packages,
            disk_mb=body.disk_mb,
            cache_root=node.image_cache,
            mirror=node_images.apt_mirror(),
            emit=emit,
        ),
    )
    return StreamingResponse(step, media_type=NDJSON)


@router.post(
    "/instances/{instance_id}/packages", response_class=StreamingResponse, responses=BUILD_EVENTS
)
async def fetch_packages(instance_id: str, body: c.PackagesIn, node: Node) -> StreamingResponse:
    """Download packages for a running build sandbox into it (NDJSON events)."""
    _check_build_sandbox(instance_id)
    node_images.check_packages(body.packages)
    driver = node.driver
    step = node_images.event_stream(
        driver,
        instance_id,
        lambda emit: node_images.fetch_packages(
            driver,
            instance_id,
            packages=body.packages,
            cache_root=node.image_cache,
            mirror=node_images.apt_mirror(),
            emit=emit,
        ),
    )
    return StreamingResponse(step, media_type=NDJSON)
