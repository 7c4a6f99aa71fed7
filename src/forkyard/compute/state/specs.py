"""The sandbox spec a node boots an instance from: its size, env and network, its image's
rootfs and layers, and (before its first boot) the layer its disk is cloned from."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from forkyard.compute.instances import network_in
from forkyard.compute.models import Instance
from forkyard.compute.state.image_resolution import image_path
from forkyard.compute.state.layers import ensure_on, ensure_stack
from forkyard.config import Settings
from forkyard.node.contract import SandboxSpecIn


def sandbox_spec(instance: Instance, settings: Settings) -> SandboxSpecIn:
    return SandboxSpecIn(
        instance_id=instance.id,
        image=str(image_path(instance.image)),
        vcpus=instance.vcpus,
        memory_mb=instance.memory_mb,
        disk_mb=instance.disk_mb,
        env=instance.env,
        hostname=instance.id.replace("_", "-"),
        network=network_in(instance.network, settings),
    )


async def build_spec(
    session: AsyncSession, instance: Instance, settings: Settings
) -> SandboxSpecIn:
    """The node's sandbox spec with the instance's image and layers (and, before its first boot,
    the layer its disk is cloned from), those layers copied to the instance's server first."""
    stack = await ensure_stack(session, instance)
    spec = sandbox_spec(instance, settings).model_copy(
        update={
            "image": stack.rootfs,
            "layer_ids": list(stack.layer_ids),
            "from_layer": stack.boot_layer_id or None,
        }
    )
    assert instance.server_id
    await ensure_on(
        session,
        settings,
        instance.server_id,
        [*([stack.boot_layer_id] if stack.boot_layer_id else []), *stack.layer_ids],
    )
    return spec
