"""Real sandboxes: the default image (built once, cached across runs) and a driver per session."""

import os
import uuid
from pathlib import Path

import pytest

from forkyard.node.drivers.base import SandboxSpec
from forkyard.node.drivers.sandbox import SandboxDriver
from forkyard.node.images import ensure_default_image


@pytest.fixture(scope="session")
def default_image() -> Path:
    cache = Path(os.environ.get("FORKYARD_IMAGE_CACHE", "/var/cache/forkyard/images"))
    return ensure_default_image(cache, cache_dir=cache)


@pytest.fixture(scope="session")
async def driver(tmp_path_factory):
    # A cgroup parent of its own, so this run's reconcile never touches another node's groups.
    d = SandboxDriver(tmp_path_factory.mktemp("node"), cgroup_parent=f"forkyard-test-{os.getpid()}")
    yield d
    for instance_id in d.list_owned():
        await d.destroy(instance_id)
    await d.close()
    for c in ("memory", "pids", "cpu", "cpuacct", "freezer"):
        p = Path("/sys/fs/cgroup") / c / d.cgroup_parent
        if p.is_dir():
            p.rmdir()
    d.release_store()  # the layer store's XFS volume and layer mounts


@pytest.fixture
def make_spec(default_image):
    def make(**kw) -> SandboxSpec:
        kw.setdefault("memory_mb", 256)
        kw.setdefault("disk_mb", 128)
        return SandboxSpec(instance_id=f"t-{uuid.uuid4().hex[:10]}", image=default_image, **kw)

    return make


@pytest.fixture
async def instance(driver, make_spec):
    spec = make_spec()
    await driver.start(spec)
    yield spec.instance_id
    await driver.destroy(spec.instance_id)
