"""Image versions and families: who may see and manage one, whose family a family route acts
on, and promotion (the family's current version)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from forkyard.compute.events import ImagePromoted
from forkyard.compute.models import BaseImage
from forkyard.compute.state import schemas
from forkyard.compute.state.errors import ImageNotReady
from forkyard.compute.state.image_resolution import ensure_platform_default, readable
from forkyard.db.tenancy import owned
from forkyard.events import emit
from forkyard.identity.principal import Principal
from forkyard.kit.clock import utcnow
from forkyard.kit.errors import Forbidden, NotFound
from forkyard.kit.ids import has_prefix


def image_out(image: BaseImage, *, logs: bool = False) -> schemas.BaseImageOut:
    return schemas.BaseImageOut(
        id=image.id,
        family=image.family,
        version=image.version,
        status=image.status,
        current=image.is_current,
        platform=image.org_id is None,
        org_id=image.org_id,
        description=image.description,
        server_id=image.server_id,
        recipe=image.recipe,
        progress=image.progress,
        error=image.error,
        logs=image.logs if logs else None,
        created_at=image.created_at,
        finished_at=image.finished_at,
        promoted_at=image.promoted_at,
    )


async def get_image(session: AsyncSession, principal: Principal, image_id: str) -> BaseImage:
    """The org's image version or a platform one (every org may read those), else 404."""
    await ensure_platform_default(session)
    image = await session.get(BaseImage, image_id) if has_prefix(image_id, "img") else None
    if image is None or not readable(image, principal):
        raise NotFound.of("Image", image_id)
    return image


def require_manage(principal: Principal, image_org: str | None) -> None:
    """Org images are the org's writers'; platform images are staff's."""
    if image_org is None and not principal.is_staff:
        raise Forbidden("Platform images are managed by staff.")


async def family_owner(session: AsyncSession, principal: Principal, family: str) -> str | None:
    """Whose family a family route acts on: the org's if it has one, else the platform's."""
    await ensure_platform_default(session)
    own = (
        await session.execute(
            owned(select(BaseImage.id).where(BaseImage.family == family), principal, BaseImage)
        )
    ).first()
    if own:
        return principal.org_id
    platform = (
        await session.execute(
            select(BaseImage.id).where(BaseImage.org_id.is_(None), BaseImage.family == family)
        )
    ).first()
    if platform:
        return None
    raise NotFound(f"Image family {family} was not found.", details={"family": family})


def family_filter(org_id: str | None, family: str) -> Any:
    """The rows of one family, the platform's (None) or an org's. Not a tenancy check: the owner
    was decided by family_owner or comes from an image the caller already may see."""
    owner = BaseImage.org_id.is_(None) if org_id is None else BaseImage.org_id == org_id
    return (owner, BaseImage.family == family)


async def promote(session: AsyncSession, image: BaseImage) -> None:
    if image.status != "ready":
        raise ImageNotReady(
            f"Image {image.id} is {image.status}; only a ready image can be promoted.",
            details={"status": image.status},
        )
    for other in (
        await session.execute(
            select(BaseImage)
            .where(*family_filter(image.org_id, image.family), BaseImage.is_current.is_(True))
            .with_for_update()
        )
    ).scalars():
        other.is_current = False
    image.is_current = True
    image.promoted_at = image.promoted_at or utcnow()
    await emit(session, ImagePromoted.of(image))
    await session.flush()
