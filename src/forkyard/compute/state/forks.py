"""Fork (tag instances): `count` new instances with the parent's filesystem as it was at the
call, on the parent's server (that is where its layers are) while it has room; the parent keeps
running. The node captures the parent once and boots every child on its own reflink clone, in
parallel. Children beyond the parent server's room are placed on other servers and boot in the
background from the recorded fork layer, copied there first (the answer is then 202)."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Annotated

from fastapi import Query, Request, Response
from sqlalchemy import func, select

from forkyard.audit.service import record
from forkyard.compute.errors import NoCapacity
from forkyard.compute.events import (
    InstanceDeleted,
    InstanceForked,
)
from forkyard.compute.instances import (
    enter,
    get_instance,
    get_vm,
    instance_out,
    require_verified,
)
from forkyard.compute.models import ComputeServer, Instance, InstanceStack
from forkyard.compute.node_client import RemoteError
from forkyard.compute.provision import Blueprint, provision
from forkyard.compute.quotas import check_quota
from forkyard.compute.servers import node_for, place, server_is_fresh
from forkyard.compute.state import schemas
from forkyard.compute.state.checkpoints import require_capturable
from forkyard.compute.state.layers import (
    capture,
    ensure_stack,
    forget_node_layer,
)
from forkyard.compute.state.specs import build_spec
from forkyard.compute.states import InstanceStatus
from forkyard.config import Settings
from forkyard.db.session import DbSession
from forkyard.events import Actor, emit
from forkyard.identity.deps import Writer, settings_of
from forkyard.identity.routing import protected_router
from forkyard.jobs import enqueue
from forkyard.kit.clock import utcnow
from forkyard.kit.ids import new_id
from forkyard.node.contract import ForkIn

router = protected_router("instances", prefix="/v1/instances")
FORK_TIMEOUT_S = 600

log = logging.getLogger(__name__)


async def free_slots(session: DbSession, server: ComputeServer | None, settings: Settings) -> int:
    if server is None or server.status != "active" or not server_is_fresh(server, settings):
        return 0
    placed = (
        await session.execute(
            select(func.count())
            .select_from(Instance)
            .where(
                Instance.server_id == server.id,
                Instance.status.in_(("provisioning", "running")),
            )
        )
    ).scalar_one()
    return max(0, server.slots + server.running_instances - int(placed))


@router.post("/{id}/fork", status_code=201, response_model=schemas.ForkOut)
async def fork_instance(
    id: str,
    body: schemas.ForkRequest,
    request: Request,
    response: Response,
    session: DbSession,
    principal: Writer,
    wait: Annotated[
        bool, Query(description="Answer once the children run (else 202, they boot in a job).")
    ] = True,
) -> schemas.ForkOut:
    """Fork the instance into `count` new ones with its filesystem as it is now."""
    t0 = time.monotonic()
    settings = settings_of(request)
    require_verified(principal)
    parent = await get_instance(session, principal, id, lock=True)
    require_capturable(parent)
    over = body.overrides or schemas.ForkOverrides()
    vcpus = over.vcpus or parent.vcpus
    memory_mb = over.memory_mb or parent.memory_mb
    assert principal.org_id
    await check_quota(
        session, settings, principal.org_id, vcpus, memory_mb, body.count, disk_mb=parent.disk_mb
    )
    server = await session.get(ComputeServer, parent.server_id, with_for_update=True)
    room = await free_slots(session, server, settings)
    parent_stack = await ensure_stack(session, parent)
    prefix = body.name_prefix or f"{parent.name}-fork"
    # A child is its parent as it is now: sizes (unless overridden), settings, egress policy
    # (a fork reaches what its parent reaches) and a disk already set up.
    like_parent = Blueprint(
        profile_id=parent.profile_id,
        image=parent.image,
        vcpus=vcpus,
        memory_mb=memory_mb,
        disk_mb=parent.disk_mb,
        env={**parent.env, **(over.env or {})},
        labels={**parent.labels, **(over.labels or {})},
        idle_timeout_s=parent.idle_timeout_s,
        network=dict(parent.network or {}),
        setup_commands=list(parent.setup_commands),
        setup_done=True,
    )
    children: list[Instance] = []
    for i in range(body.count):
        # The parent's server while it has room (its layers are there); then other servers
        # (placement prefers those holding the parent's layers), which get a copy of the fork
        # layer before the child boots.
        assert parent.server_id  # require_capturable: it runs somewhere
        server_id = parent.server_id
        if i >= room:
            try:
                server_id = (await place(session, settings, parent_stack.layer_ids)).id
            except NoCapacity:
                break
        child = await provision(
            session,
            replace(like_parent, name=f"{prefix}-{i + 1}"),
            org_id=parent.org_id,
            created_by=principal.user_id,
            server_id=server_id,
            stack=InstanceStack(
                image_id=parent_stack.image_id,
                rootfs=parent_stack.rootfs,
                layer_ids=list(parent_stack.layer_ids),
            ),
            actor=Actor.of(principal),
            boot=False,  # below: one node call, or jobs once the fork layer is captured
            parent_id=parent.id,
        )
        children.append(child)
    await session.flush()
    errors: dict[int, schemas.ForkError] = {
        i: schemas.ForkError(code="no_capacity", message="No server has room for this child.")
        for i in range(len(children), body.count)
    }
    spread = any(c.server_id != parent.server_id for c in children)
    if children and wait and not spread:
        await _fork_now(session, settings, parent, children, errors)
    elif children:
        # Capture now (the fork point is the call), boot the children in jobs from that layer
        # (children on other servers always: their boot copies the layer there first).
        layer = await capture(session, settings, parent, "fork")
        for child in children:
            stack = await session.get(InstanceStack, child.id)
            assert stack is not None
            stack.boot_layer_id = layer.id
            await enqueue(session, "instance.boot", {"instance_id": child.id})
        response.status_code = 202
    out = [
        schemas.ForkChild(
            index=i,
            instance=None if i in errors else instance_out(children[i]),
            error=errors.get(i),
        )
        for i in range(body.count)
    ]
    forked = [c for i, c in enumerate(children) if i not in errors]
    await emit(
        session, InstanceForked.of(parent, Actor.of(principal), children=[c.id for c in forked])
    )
    await record(
        session,
        "instance.forked",
        principal=principal,
        target_type="instance",
        target_id=parent.id,
        data={"children": [c.id for i, c in enumerate(children) if i not in errors]},
    )
    return schemas.ForkOut(
        parent_id=parent.id, children=out, fork_ms=round((time.monotonic() - t0) * 1000, 2)
    )


async def _fork_now(
    session: DbSession,
    settings: Settings,
    parent: Instance,
    children: list[Instance],
    errors: dict[int, schemas.ForkError],
) -> None:
    """One node call: capture the parent, boot every child on a clone. Children that fail are
    removed (the node left nothing of them) and reported by index."""
    node = await node_for(session, settings, parent.server_id)
    specs = [await build_spec(session, c, settings) for c in children]
    layer_id = new_id("lyr")
    result = await node.fork(
        parent.id, ForkIn(layer_id=layer_id, children=specs), timeout=FORK_TIMEOUT_S
    )
    # The children are clones: nothing depends on the fork layer any more.
    await forget_node_layer(node, layer_id)
    now = utcnow()
    for i, (child, answer) in enumerate(zip(children, result.children, strict=True)):
        vm = await get_vm(session, child)
        if answer.error is not None or answer.pid is None:
            # The node's text names host paths and tool output: the log keeps it, the
            # caller gets the code and the message of any node failure (RemoteError's).
            log.warning("fork child %s failed: %s", child.id, answer.error)
            errors[i] = schemas.ForkError(
                code=answer.error.code if answer.error else "sandbox_failed",
                message=RemoteError.GENERIC,
            )
            stack = await session.get(InstanceStack, child.id)
            if stack is not None:
                await session.delete(stack)
            await session.delete(vm)
            await session.flush()
            await emit(session, InstanceDeleted.of(child))
            await session.delete(child)
            continue
        vm.state, vm.pid, vm.boot_ms, vm.started_at, vm.boots = (
            "running",
            answer.pid,
            answer.boot_ms,
            now,
            1,
        )
        await enter(session, child, InstanceStatus.RUNNING, action="fork")
    await session.flush()
