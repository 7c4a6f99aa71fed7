"""Which base image a name means: an image id or a family's current version, visible to an org
(its own families first, then the platform's). Read by instance creation (the stack it pins),
layers and image builds; imports no other compute module but the models."""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from forkyard.compute.models import BaseImage
from forkyard.db.tenancy import Tenant, is_owned
from forkyard.kit.clock import utcnow
from forkyard.kit.ids import has_prefix

DEFAULT_FAMILY = "default"
# Images a node provides itself, by name (every other image is a version in the database).
NODE_IMAGES = frozenset({"default"})


def image_path(image: str) -> Path:
    """Where the node finds an image. The node resolves `default` to its built default rootfs."""
    return Path("default") if image == "default" else Path(image)


# Databases (by engine) seen holding the platform default, committed: never looked up again in
# this process (creating an instance resolves its image, and this ran first every time).
_seeded: weakref.WeakSet[Any] = weakref.WeakSet()


async def ensure_platform_default(session: AsyncSession) -> None:
    """Seed the platform `default` family: version 1 is the node's built-in rootfs."""
    engine = session.get_bind()
    if engine in _seeded:
        return
    has_default = select(BaseImage.id).where(
        BaseImage.org_id.is_(None), BaseImage.family == DEFAULT_FAMILY
    )
    if (await session.execute(has_default)).first():
        _seeded.add(engine)
        return
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtext('forkyard.base_images'))"))
    if (await session.execute(has_default)).first():
        return
    now = utcnow()
    session.add(
        BaseImage(
            org_id=None,
            family=DEFAULT_FAMILY,
            version=1,
            status="ready",
            is_current=True,
            promoted_at=now,
            description="Debian bookworm minbase with python3, git, curl (the node's built-in rootfs).",
            rootfs="default",
            recipe={"builtin": "default"},
            progress=100,
            logs="",
            finished_at=now,
        )
    )
    await session.flush()


def visible(org_id: str | None) -> Any:
    """The images an org may read, as a filter: its own and the platform's. Not `owned` alone:
    platform rows (no org) are every org's to read."""
    return or_(BaseImage.org_id == org_id, BaseImage.org_id.is_(None))


def readable(image: BaseImage, tenant: Tenant | str | None) -> bool:
    """`visible` for a row in hand: a platform image, or one the tenant's org owns."""
    return image.org_id is None or is_owned(image, tenant)


async def family_current(
    session: AsyncSession, org_id: str | None, family: str
) -> BaseImage | None:
    """The family's current version: the org's own family first, then the platform's."""
    await ensure_platform_default(session)
    rows = (
        await session.execute(
            select(BaseImage).where(
                visible(org_id), BaseImage.family == family, BaseImage.is_current.is_(True)
            )
        )
    ).scalars()
    found = sorted(rows, key=lambda i: i.org_id is None)
    return found[0] if found else None


async def resolve_image(session: AsyncSession, org_id: str | None, name: str) -> BaseImage | None:
    """An instance's `image` (an image id or a family name) as a ready version, or None when it
    names neither (a node image name given directly)."""
    if has_prefix(name, "img"):
        image = await session.get(BaseImage, name)
        if image is None or not readable(image, org_id) or image.status != "ready":
            return None
        return image
    return await family_current(session, org_id, name)
