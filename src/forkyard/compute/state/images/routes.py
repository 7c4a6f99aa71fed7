"""The base-image routes (tag base_images): list and read versions and families, prepare a new
version (its build runs as a job: build.py), promote, roll a family back, abort, delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Query, Request, Response
from sqlalchemy import func, select, text

from forkyard.compute.events import ImageAborted, ImageBuildStarted, ImageDeleted
from forkyard.compute.models import BaseImage, Instance, InstanceStack, Snapshot
from forkyard.compute.quotas import BUILD_DISK_MB, check_disk
from forkyard.compute.state import schemas
from forkyard.compute.state.errors import ImageInUse, ImageNotReady, NoPreviousVersion
from forkyard.compute.state.image_resolution import (
    DEFAULT_FAMILY,
    ensure_platform_default,
    family_current,
    resolve_image,
    visible,
)
from forkyard.compute.state.images.families import (
    family_filter,
    family_owner,
    get_image,
    image_out,
    promote,
    require_manage,
)
from forkyard.compute.state.layers import release
from forkyard.db.session import DbSession
from forkyard.db.tenancy import get_owned
from forkyard.events import Actor, emit
from forkyard.identity.deps import Reader, Writer, settings_of
from forkyard.identity.routing import protected_router
from forkyard.jobs import enqueue
from forkyard.kit.clock import utcnow
from forkyard.kit.errors import Forbidden, NotFound
from forkyard.kit.pagination import Page, PageParams, page_params, paginate

router = protected_router("base_images", prefix="/v1")
Paging = Annotated[PageParams, Depends(page_params)]


@router.get("/base-images", response_model=Page[schemas.BaseImageOut])
async def list_base_images(
    session: DbSession,
    principal: Reader,
    page: Paging,
    family: Annotated[str | None, Query(description="Only this family.")] = None,
) -> Page[schemas.BaseImageOut]:
    """The org's images and the platform's, every version, newest first."""
    await ensure_platform_default(session)
    stmt = select(BaseImage).where(visible(principal.org_id))
    if family:
        stmt = stmt.where(BaseImage.family == family)
    rows, cursor = await paginate(session, stmt, BaseImage, page)
    return Page(data=[image_out(i) for i in rows], next_cursor=cursor)


@router.get("/base-images/default", response_model=schemas.BaseImageOut)
async def get_default_image(session: DbSession, principal: Reader) -> schemas.BaseImageOut:
    """The image new instances get when they name none: the `default` family's current version."""
    image = await family_current(session, principal.org_id, DEFAULT_FAMILY)
    if image is None:
        raise NotFound("The default family has no current version.")
    return image_out(image)


@router.get("/base-images/family/{family}", response_model=schemas.BaseImageOut)
async def get_family_current(
    family: str, session: DbSession, principal: Reader
) -> schemas.BaseImageOut:
    """The family's current version (the org's family of that name first, then the platform's)."""
    image = await family_current(session, principal.org_id, family)
    if image is None:
        raise NotFound(f"Image family {family} has no current version.", details={"family": family})
    return image_out(image)


@router.get("/base-images/family/{family}/versions", response_model=Page[schemas.BaseImageOut])
async def list_family_versions(
    family: str, session: DbSession, principal: Reader, page: Paging
) -> Page[schemas.BaseImageOut]:
    """Every version of the family, newest first."""
    owner = await family_owner(session, principal, family)
    rows, cursor = await paginate(
        session, select(BaseImage).where(*family_filter(owner, family)), BaseImage, page
    )
    return Page(data=[image_out(i) for i in rows], next_cursor=cursor)


@router.post("/base-images/family/{family}/rollback", response_model=schemas.BaseImageOut)
async def rollback_family(
    family: str, session: DbSession, principal: Writer
) -> schemas.BaseImageOut:
    """Make the family's previous promoted version current again (running instances keep theirs)."""
    owner = await family_owner(session, principal, family)
    require_manage(principal, owner)
    versions = list(
        (
            await session.execute(
                select(BaseImage)
                .where(*family_filter(owner, family))
                .order_by(BaseImage.version.desc())
                .with_for_update()
            )
        ).scalars()
    )
    current = next((v for v in versions if v.is_current), None)
    below = current.version if current else 1 << 30
    previous = next(
        (
            v
            for v in versions
            if v.version < below and v.status == "ready" and v.promoted_at is not None
        ),
        None,
    )
    if previous is None:
        raise NoPreviousVersion(details={"family": family})
    await promote(session, previous)
    return image_out(previous)


@router.get("/base-images/{id}", response_model=schemas.BaseImageOut)
async def get_base_image(id: str, session: DbSession, principal: Reader) -> schemas.BaseImageOut:
    """One image version, with its build logs."""
    return image_out(await get_image(session, principal, id), logs=True)


@router.delete("/base-images/{id}", status_code=204)
async def delete_base_image(id: str, session: DbSession, principal: Writer) -> Response:
    """Delete a version that is neither current nor used by an instance nor building."""
    image = await get_image(session, principal, id)
    require_manage(principal, image.org_id)
    if image.status == "building":
        raise ImageNotReady(
            "The image is building; abort it first.", details={"status": "building"}
        )
    users = sorted(
        (
            await session.execute(
                select(InstanceStack.instance_id)
                .join(Instance, Instance.id == InstanceStack.instance_id)
                .where(InstanceStack.image_id == image.id, Instance.status != "deleting")
            )
        ).scalars()
    )
    if image.is_current or users:
        raise ImageInUse(details={"current": image.is_current, "instances": users})
    layer_id = image.layer_id
    await emit(session, ImageDeleted.of(image, Actor.of(principal)))
    await session.delete(image)
    await session.flush()
    await release(session, layer_id)
    return Response(status_code=204)


@router.post("/images/prepare", status_code=202, response_model=schemas.BaseImageOut)
async def prepare_image(
    body: schemas.ImagePrepare, request: Request, session: DbSession, principal: Writer
) -> schemas.BaseImageOut:
    """Build a new version of a family in the background (poll it for progress and logs)."""
    if body.platform and not principal.is_staff:
        raise Forbidden("Platform images are managed by staff.")
    owner = None if body.platform else principal.org_id
    recipe: dict[str, Any] = {
        "packages": body.packages,
        "commands": body.commands,
        "disk_mb": body.disk_mb,
    }
    if body.from_snapshot:
        snap = await get_owned(session, Snapshot, body.from_snapshot, principal, kind="Snapshot")
        recipe = {"from_snapshot": snap.id}
    elif body.suite:
        recipe["suite"] = body.suite
    else:
        assert body.base_image
        base = await resolve_image(session, principal.org_id, body.base_image)
        if base is None:
            raise NotFound.of("Image", body.base_image)
        recipe["base_image"] = base.id
    # The build sandbox's disk counts against the org's disk total while it builds.
    await check_disk(
        session, settings_of(request), owner, int(recipe.get("disk_mb") or BUILD_DISK_MB)
    )
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"img:{owner}:{body.family}"}
    )
    top = (
        await session.execute(
            select(func.max(BaseImage.version)).where(*family_filter(owner, body.family))
        )
    ).scalar()
    image = BaseImage(
        org_id=owner,
        family=body.family,
        version=(top or 0) + 1,
        status="building",
        is_current=False,
        description=body.description,
        recipe=recipe,
        progress=0,
        logs="",
        created_by=principal.user_id,
    )
    session.add(image)
    await session.flush()
    await enqueue(session, "image.build", {"image_id": image.id})
    await emit(session, ImageBuildStarted.of(image, Actor.of(principal)))
    return image_out(image)


@router.post("/images/promote", response_model=schemas.BaseImageOut)
async def promote_image(
    body: schemas.ImageRef, session: DbSession, principal: Writer
) -> schemas.BaseImageOut:
    """Make a ready version its family's current one; new instances get it."""
    image = await get_image(session, principal, body.image_id)
    require_manage(principal, image.org_id)
    await promote(session, image)
    return image_out(image)


@router.post("/images/abort", response_model=schemas.BaseImageOut)
async def abort_image(
    body: schemas.ImageRef, session: DbSession, principal: Writer
) -> schemas.BaseImageOut:
    """Cancel a build; its build sandbox and partial layer are cleaned up."""
    image = await get_image(session, principal, body.image_id)
    require_manage(principal, image.org_id)
    if image.status != "building":
        raise ImageNotReady(
            f"Image {image.id} is {image.status}; only a build can be aborted.",
            details={"status": image.status},
        )
    image.status, image.finished_at = "aborted", utcnow()
    image.error = "aborted"
    await emit(session, ImageAborted.of(image, Actor.of(principal)))
    return image_out(image)
