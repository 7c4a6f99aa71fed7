"""Instances and their VMs, and profiles (tags instances, vms, profiles)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request, Response
from sqlalchemy import select

from forkyard.audit.service import record
from forkyard.compute import schemas
from forkyard.compute.errors import InstanceNotRunning, ProfileInUse
from forkyard.compute.instances import get_instance, get_profile, get_vm, instance_out, network_in
from forkyard.compute.models import Instance, Profile, Vm
from forkyard.compute.servers import node_for
from forkyard.compute.service import create_and_boot, create_instance
from forkyard.compute.state.specs import build_spec
from forkyard.compute.states import InstanceStatus, transition
from forkyard.db.session import DbSession, ReadSession, database
from forkyard.db.tenancy import owned
from forkyard.identity.deps import Reader, Writer, settings_of
from forkyard.identity.principal import Principal
from forkyard.identity.routing import protected_router
from forkyard.jobs import enqueue
from forkyard.kit.clock import utcnow
from forkyard.kit.pagination import Page, PageParams, page_params, paginate

instances = protected_router("instances", prefix="/v1/instances")
vms = protected_router("vms", prefix="/v1/instances")
profiles = protected_router("profiles", prefix="/v1/profiles")

Paging = Annotated[PageParams, Depends(page_params)]


@instances.post(
    "",
    status_code=202,
    response_model=schemas.InstanceOut,
    responses={201: {"model": schemas.InstanceOut, "description": "Created and booted (`wait`)."}},
)
async def create_instance_route(
    body: schemas.InstanceCreate,
    request: Request,
    response: Response,
    session: DbSession,
    principal: Writer,
    wait: Annotated[
        bool,
        Query(
            description="Boot within this request: answer 201 once the instance is `running` "
            "(or `error`, with its reason) instead of 202 `provisioning`."
        ),
    ] = False,
) -> schemas.InstanceOut:
    """Create an instance; it answers `provisioning` and becomes `running` when its agent answers (or, with `wait=true`, answers once it runs)."""
    settings = settings_of(request)
    if wait:
        instance, booted = await create_and_boot(database(request), settings, principal, body)
        if booted:
            response.status_code = 201
        return instance_out(instance)
    return instance_out(await create_instance(session, settings, principal, body))


@instances.get("", response_model=Page[schemas.InstanceOut])
async def list_instances(
    session: DbSession,
    principal: Reader,
    page: Paging,
    status: Annotated[str | None, Query(description="Only instances in this status.")] = None,
    label: Annotated[
        list[str] | None, Query(description="`key=value`; repeat to require several.")
    ] = None,
) -> Page[schemas.InstanceOut]:
    """The org's instances, newest first, filtered by status and labels."""
    stmt = owned(select(Instance), principal)
    if status:
        stmt = stmt.where(Instance.status == status)
    for item in label or []:
        key, _, value = item.partition("=")
        stmt = stmt.where(Instance.labels.contains({key: value}))
    rows, cursor = await paginate(session, stmt, Instance, page)
    return Page(data=[instance_out(i) for i in rows], next_cursor=cursor)


@instances.get("/{id}", response_model=schemas.InstanceOut)
async def get_instance_route(
    id: str, session: ReadSession, principal: Reader
) -> schemas.InstanceOut:
    """One instance."""
    return instance_out(await get_instance(session, principal, id))


@instances.patch("/{id}", response_model=schemas.InstanceOut)
async def update_instance(
    id: str, body: schemas.InstanceUpdate, request: Request, session: DbSession, principal: Writer
) -> schemas.InstanceOut:
    """Rename an instance or change its labels, idle timeout or egress policy (`network`: a
    running instance's changes at once; if its node cannot apply it, nothing changes)."""
    instance = await get_instance(session, principal, id, lock=True)
    if body.network is not None:
        settings = settings_of(request)
        instance.network = body.network.model_dump()
        if instance.status == "running":
            node = await node_for(session, settings, instance.server_id)
            await node.set_network(instance.id, network_in(instance.network, settings))
        await record(
            session,
            "instance.network_changed",
            principal=principal,
            target_type="instance",
            target_id=instance.id,
            data={"egress": body.network.egress, "allow": body.network.allow},
        )
    if body.name is not None:
        instance.name = body.name
    if body.labels is not None:
        instance.labels = body.labels
    if "idle_timeout_s" in body.model_fields_set:
        instance.idle_timeout_s = body.idle_timeout_s
    instance.updated_at = utcnow()
    return instance_out(instance)


@instances.delete("/{id}", status_code=202, response_model=schemas.InstanceOut)
async def delete_instance(id: str, session: DbSession, principal: Writer) -> schemas.InstanceOut:
    """Delete an instance: every process, mount, cgroup and byte of its storage goes."""
    instance = await get_instance(session, principal, id, lock=True)
    transition(instance, InstanceStatus.DELETING, action="delete")
    await enqueue(session, "instance.destroy", {"instance_id": instance.id})
    await record(
        session,
        "instance.deleted",
        principal=principal,
        target_type="instance",
        target_id=instance.id,
    )
    return instance_out(instance)


# --- the VM: the running part of the instance ---


def vm_out(vm: Vm) -> schemas.VmOut:
    running = vm.state == "running" and vm.started_at is not None
    return schemas.VmOut(
        id=vm.id,
        instance_id=vm.instance_id,
        state=vm.state,
        server_id=vm.server_id,
        pid=vm.pid,
        boot_ms=vm.boot_ms,
        started_at=vm.started_at,
        stopped_at=vm.stopped_at,
        boots=vm.boots,
        uptime_s=(utcnow() - vm.started_at).total_seconds() if running and vm.started_at else None,
    )


@vms.get("/{id}/vm", response_model=schemas.VmOut)
async def get_vm_route(
    id: str, request: Request, session: DbSession, principal: Reader
) -> schemas.VmOut:
    """The instance's VM: state, server, pid, uptime, and live cpu, memory and disk use."""
    instance = await get_instance(session, principal, id)
    vm = await get_vm(session, instance)
    out = vm_out(vm)
    if vm.state == "running":
        node = await node_for(session, settings_of(request), vm.server_id)
        stats = await node.stats(instance.id)
        out.cpu_seconds = stats.cpu_seconds
        out.memory_bytes = stats.memory_bytes
        out.memory_limit_bytes = stats.memory_limit_bytes
        out.disk_used_bytes = stats.disk_used_bytes
        out.disk_total_bytes = stats.disk_total_bytes
        out.pids = stats.pids
    return out


@vms.post("/{id}/vm", status_code=202, response_model=schemas.InstanceOut)
async def start_vm(id: str, session: DbSession, principal: Writer) -> schemas.InstanceOut:
    """Boot a stopped instance again; its disk is as it was."""
    instance = await get_instance(session, principal, id, lock=True)
    transition(instance, InstanceStatus.PROVISIONING, action="start")
    await enqueue(session, "instance.boot", {"instance_id": instance.id})
    return instance_out(instance)


@vms.delete("/{id}/vm", status_code=202, response_model=schemas.InstanceOut)
async def stop_vm(id: str, session: DbSession, principal: Writer) -> schemas.InstanceOut:
    """Stop the instance's VM; the disk stays for the next boot."""
    instance = await get_instance(session, principal, id, lock=True)
    transition(instance, InstanceStatus.STOPPING, action="stop")
    await enqueue(
        session, "instance.stop", {"instance_id": instance.id, "reason": "stopped_by_user"}
    )
    return instance_out(instance)


@vms.post("/{id}/vm/restart", response_model=schemas.InstanceOut)
async def restart_vm(
    id: str, request: Request, session: DbSession, principal: Writer
) -> schemas.InstanceOut:
    """Restart the VM: every process restarts, files stay. Returns when it is running again."""
    instance = await get_instance(session, principal, id, lock=True)
    if instance.status != "running":
        raise InstanceNotRunning(
            f"Instance {instance.id} is {instance.status}.", details={"status": instance.status}
        )
    settings = settings_of(request)
    node = await node_for(session, settings, instance.server_id)
    vm = await get_vm(session, instance)
    spec = await build_spec(session, instance, settings)
    await node.stop(instance.id)
    info = await node.boot(instance.id, spec)
    now = utcnow()
    vm.pid, vm.boot_ms, vm.started_at, vm.boots = info.pid, info.boot_ms, now, vm.boots + 1
    instance.last_activity_at = now
    return instance_out(instance)


@vms.post("/{id}/vm/flush", response_model=schemas.VmOut)
async def flush_vm(
    id: str, request: Request, session: DbSession, principal: Writer
) -> schemas.VmOut:
    """Make every write durable on the server's disk; returns when it is."""
    instance = await get_instance(session, principal, id)
    if instance.status != "running":
        raise InstanceNotRunning(
            f"Instance {instance.id} is {instance.status}.", details={"status": instance.status}
        )
    node = await node_for(session, settings_of(request), instance.server_id)
    await node.flush(instance.id)
    return vm_out(await get_vm(session, instance))


# --- profiles ---


def profile_out(p: Profile) -> schemas.ProfileOut:
    return schemas.ProfileOut(
        id=p.id,
        org_id=p.org_id,
        name=p.name,
        image=p.image,
        vcpus=p.vcpus,
        memory_mb=p.memory_mb,
        disk_mb=p.disk_mb,
        env=p.env,
        idle_timeout_s=p.idle_timeout_s,
        setup_commands=list(p.setup_commands),
        network=schemas.Network.model_validate(p.network) if p.network else None,
        created_at=p.created_at,
        updated_at=p.updated_at,
    )


async def _name_taken(
    session: DbSession, principal: Principal, name: str, exclude: str | None = None
) -> bool:
    stmt = owned(select(Profile.id).where(Profile.name == name), principal, model=Profile)
    if exclude:
        stmt = stmt.where(Profile.id != exclude)
    return (await session.execute(stmt)).first() is not None


@profiles.get("", response_model=Page[schemas.ProfileOut])
async def list_profiles(
    session: DbSession, principal: Reader, page: Paging
) -> Page[schemas.ProfileOut]:
    """The org's profiles, newest first."""
    rows, cursor = await paginate(session, owned(select(Profile), principal), Profile, page)
    return Page(data=[profile_out(p) for p in rows], next_cursor=cursor)


@profiles.post("", status_code=201, response_model=schemas.ProfileOut)
async def create_profile(
    body: schemas.ProfileCreate, session: DbSession, principal: Writer
) -> schemas.ProfileOut:
    """A named preset to create instances from: image, size, env, idle timeout, setup commands."""
    if await _name_taken(session, principal, body.name):
        raise ProfileInUse(details={"name": body.name})
    profile = Profile(org_id=principal.org_id, **body.model_dump())
    session.add(profile)
    await session.flush()
    return profile_out(profile)


@profiles.get("/{id}", response_model=schemas.ProfileOut)
async def get_profile_route(id: str, session: DbSession, principal: Reader) -> schemas.ProfileOut:
    """One profile."""
    return profile_out(await get_profile(session, principal, id))


@profiles.patch("/{id}", response_model=schemas.ProfileOut)
async def update_profile(
    id: str, body: schemas.ProfileUpdate, session: DbSession, principal: Writer
) -> schemas.ProfileOut:
    """Change a profile; instances already created keep their settings."""
    profile = await get_profile(session, principal, id)
    changes = body.model_dump(exclude_unset=True)
    if "name" in changes and await _name_taken(
        session, principal, changes["name"], exclude=profile.id
    ):
        raise ProfileInUse(details={"name": changes["name"]})
    for key, value in changes.items():
        if value is not None or key == "idle_timeout_s":
            setattr(profile, key, value)
    profile.updated_at = utcnow()
    return profile_out(profile)


@profiles.delete("/{id}", status_code=204)
async def delete_profile(id: str, session: DbSession, principal: Writer) -> Response:
    """Delete a profile; instances created from it are unaffected."""
    await session.delete(await get_profile(session, principal, id))
    return Response(status_code=204)
