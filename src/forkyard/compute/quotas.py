"""Org quotas: instances, vCPUs, memory and disk (instances' disks, stored layers, image
builds), checked before anything is made."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Integer, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from forkyard.compute.events import QuotaNearlyReached
from forkyard.compute.models import BaseImage, Instance, Layer
from forkyard.compute.states import LIVE_STATUSES
from forkyard.config import Settings
from forkyard.db.tenancy import owned
from forkyard.events import emit
from forkyard.kit.errors import QuotaExceeded

# An image build whose recipe names no disk size (from a snapshot) counts this much.
BUILD_DISK_MB = 2048
MIB = 1024 * 1024
# An org is told (quota.nearly_reached) when a change takes its use of a limit to this share.
NEARLY_PCT = 80


async def _warn_if_nearly(
    session: AsyncSession,
    org_id: str,
    limit: str,
    cap: float,
    before: float,
    after: float,
    *,
    while_over: bool = False,
) -> None:
    """Emit quota.nearly_reached when this change crosses NEARLY_PCT of `cap` (from the sums
    the check already has: no query unless it fires). `while_over`: on every change that ends
    over it, for captures, whose own bytes are counted only once captured, so a crossing
    they cause shows at the next one. The notice is rationed by its subscriber (notifications)."""
    mark = cap * NEARLY_PCT / 100
    if after >= mark and (while_over or before < mark):
        await emit(
            session,
            QuotaNearlyReached(
                org_id=org_id,
                resource_id=org_id,
                limit=limit,
                max=cap,
                in_use=after,
                threshold_pct=NEARLY_PCT,
            ),
        )


def _layers_mb(org_id: str) -> Any:
    """The org's checkpoints, snapshots, images and fork layers: the bytes they hold, in MiB."""
    return owned(
        select(func.coalesce(func.sum(Layer.data_bytes), 0) / MIB), org_id, Layer
    ).scalar_subquery()


def _builds_mb(org_id: str) -> Any:
    """The disks of the org's image builds under way (each runs in a build sandbox)."""
    disk = func.coalesce(BaseImage.recipe["disk_mb"].astext.cast(Integer), BUILD_DISK_MB)
    return owned(
        select(func.coalesce(func.sum(disk), 0)).where(BaseImage.status == "building"),
        org_id,
        BaseImage,
    ).scalar_subquery()


async def check_disk(
    session: AsyncSession, settings: Settings, org_id: str | None, disk_mb: int = 1
) -> None:
    """Refuse a capture or an image build once the org's disk total (see check_quota) has
    no room for `disk_mb` more (403 `quota_exceeded`, limit `max_disk_mb`)."""
    if org_id is None:  # platform images: staff's, no org's total
        return
    in_use = int(
        (
            await session.execute(
                select(
                    owned(
                        select(func.coalesce(func.sum(Instance.disk_mb), 0)).where(
                            Instance.status.in_(LIVE_STATUSES)
                        ),
                        org_id,
                        Instance,
                    ).scalar_subquery()
                    + _layers_mb(org_id)
                    + _builds_mb(org_id)
                )
            )
        ).scalar_one()
    )
    if in_use + disk_mb > settings.max_disk_mb_per_org:
        raise QuotaExceeded(
            f"This would exceed the org's max_disk_mb limit of {settings.max_disk_mb_per_org} "
            f"(in use: {in_use}).",
            details={
                "limit": "max_disk_mb",
                "max": settings.max_disk_mb_per_org,
                "in_use": in_use,
                "requested": disk_mb,
            },
        )
    await _warn_if_nearly(
        session,
        org_id,
        "max_disk_mb",
        settings.max_disk_mb_per_org,
        in_use,
        in_use + disk_mb,
        while_over=True,
    )


async def check_quota(
    session: AsyncSession,
    settings: Settings,
    org_id: str,
    vcpus: float,
    memory_mb: int,
    count: int = 1,
    disk_mb: int = 0,
) -> None:
    """Refuse up front (403 `quota_exceeded`, naming the limit) what would take the org past
    its limits: instances, vCPUs, memory, and disk, which counts its instances' disks, the
    layers of its checkpoints, snapshots and images, and its image builds' sandboxes."""
    if disk_mb > settings.max_disk_mb_per_instance:
        raise QuotaExceeded(
            f"An instance's disk may be at most {settings.max_disk_mb_per_instance} MB.",
            details={
                "limit": "max_disk_mb_per_instance",
                "max": settings.max_disk_mb_per_instance,
                "in_use": 0,
                "requested": disk_mb,
            },
        )
    totals = select(
        func.count(),
        func.coalesce(func.sum(Instance.vcpus), 0),
        func.coalesce(func.sum(Instance.memory_mb), 0),
        func.coalesce(func.sum(Instance.disk_mb), 0) + _layers_mb(org_id) + _builds_mb(org_id),
    ).where(Instance.status.in_(LIVE_STATUSES))
    used = (await session.execute(owned(totals, org_id, Instance))).one()
    n, cpu, mem, disk = int(used[0]), float(used[1]), int(used[2]), int(used[3])
    checks = (
        ("max_instances", n, count, settings.max_instances_per_org),
        ("max_vcpus", cpu, vcpus * count, settings.max_vcpus_per_org),
        ("max_memory_mb", mem, memory_mb * count, settings.max_memory_mb_per_org),
        ("max_disk_mb", disk, disk_mb * count, settings.max_disk_mb_per_org),
    )
    for limit, current, extra, cap in checks:
        if current + extra > cap:
            raise QuotaExceeded(
                f"This would exceed the org's {limit} limit of {cap} (in use: {current:g}).",
                details={"limit": limit, "max": cap, "in_use": current, "requested": extra},
            )
    # Only once every limit has room: a refused change takes nothing.
    for limit, current, extra, cap in checks:
        await _warn_if_nearly(session, org_id, limit, cap, current, current + extra)
