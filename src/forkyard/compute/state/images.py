"""Base images (tag base_images): versioned families, org-private or platform (staff-managed).

A version is either a node's built-in rootfs (the platform `default` family's version 1 is the
node's Debian minbase) or a store layer on one server, stacked under each instance's own disk.
`POST /v1/images/prepare` builds a new version as a background job; `promote` makes a ready
version the family's current one. An instance pins its version at first boot: instances already
running keep their image, new ones get the current version.

Recipes (`_build_in_sandbox`): a snapshot's layer is shared as is; otherwise a build sandbox
`build-<image id>` boots, on the base image's stack, or (a `suite` recipe) on the empty `scratch`
rootfs over a disk the node has just debootstrapped. `packages` on a base image are downloaded by
the node (the host's apt, resolving against the image's dpkg status) into the sandbox and
installed there by apt, offline; build sandboxes never get network, so neither the recipe's
commands nor anything in an org's image can reach the mirror or the node's network. The node
keeps a .deb cache for both paths (node/images.py). The sandbox's disk is captured as the
version's layer. An abort (`POST /v1/images/abort`) cancels the running step within a second
(its stream to the node closes and the node kills debootstrap, apt or the command); the build
sandbox and its disk are deleted in every outcome, and a layer is recorded only on success."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import shlex
from collections.abc import AsyncIterator, Awaitable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Query, Request, Response
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from forkyard.compute.events import (
    ImageAborted,
    ImageBuildStarted,
    ImageDeleted,
    ImageFailed,
    ImagePromoted,
    ImageReady,
)
from forkyard.compute.models import (
    BaseImage,
    ComputeServer,
    Instance,
    InstanceStack,
    Layer,
    Snapshot,
)
from forkyard.compute.node_client import NodeClient
from forkyard.compute.quotas import BUILD_DISK_MB, check_disk
from forkyard.compute.servers import node_for, place
from forkyard.compute.state import schemas
from forkyard.compute.state.errors import (
    ImageInUse,
    ImageNotReady,
    NoPreviousVersion,
)
from forkyard.compute.state.image_resolution import (
    DEFAULT_FAMILY,
    ensure_platform_default,
    family_current,
    resolve_image,
    visible,
)
from forkyard.compute.state.layers import add_layer, ensure_on, release
from forkyard.db.session import DbSession
from forkyard.events import Actor, emit
from forkyard.identity.deps import Reader, Writer, settings_of
from forkyard.identity.principal import Principal
from forkyard.jobs import enqueue, job
from forkyard.jobs.queue import JobContext
from forkyard.kit.clock import utcnow
from forkyard.kit.errors import Forbidden, ForkyardError, NotFound
from forkyard.kit.ids import has_prefix, new_id
from forkyard.kit.pagination import Page, PageParams, page_params, paginate
from forkyard.kit.routing import protected_router
from forkyard.node.contract import BootstrapIn, ExecStreamIn, PackagesIn, SandboxSpecIn
from forkyard.node.images import DEB_INBOX, SCRATCH_IMAGE

log = logging.getLogger("forkyard.compute.images")

router = protected_router("base_images", prefix="/v1")
Paging = Annotated[PageParams, Depends(page_params)]
BUILD_MEMORY_MB = 1024
BUILD_COMMAND_TIMEOUT_S = 1800
MAX_LOG_CHARS = 200_000
PUBLISH_EVERY_S = 1.0
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}
T = TypeVar("T")


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
    await ensure_platform_default(session)
    image = await session.get(BaseImage, image_id) if has_prefix(image_id, "img") else None
    if image is None or image.org_id not in (None, principal.org_id):
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
            select(BaseImage.id).where(
                BaseImage.org_id == principal.org_id, BaseImage.family == family
            )
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


def _family_filter(org_id: str | None, family: str) -> Any:
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
            .where(*_family_filter(image.org_id, image.family), BaseImage.is_current.is_(True))
            .with_for_update()
        )
    ).scalars():
        other.is_current = False
    image.is_current = True
    image.promoted_at = image.promoted_at or utcnow()
    await emit(session, ImagePromoted.of(image))
    await session.flush()


# --- routes ---


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
        session, select(BaseImage).where(*_family_filter(owner, family)), BaseImage, page
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
                .where(*_family_filter(owner, family))
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
        snap = (
            await session.get(Snapshot, body.from_snapshot)
            if has_prefix(body.from_snapshot, "snap")
            else None
        )
        if snap is None or snap.org_id != principal.org_id:
            raise NotFound.of("Snapshot", body.from_snapshot)
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
            select(func.max(BaseImage.version)).where(*_family_filter(owner, body.family))
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


# --- the build job ---


def _append(image: BaseImage, line: str) -> None:
    image.logs = (image.logs + line.rstrip("\n") + "\n")[-MAX_LOG_CHARS:]


def _build_instance_id(image: BaseImage) -> str:
    return "build-" + image.id.replace("_", "-")


class BuildReport:
    """Logs and progress of a running build, written in their own short transactions so they
    are visible while the job's transaction is still open (the job never touches the image row
    itself until the end, so the two cannot wait on each other)."""

    def __init__(self, session: AsyncSession, image: BaseImage) -> None:
        self.bind = session.bind
        self.image_id = image.id
        self.logs = image.logs
        self.progress = image.progress

    def line(self, text: str) -> None:
        self.logs = (self.logs + text.rstrip("\n") + "\n")[-MAX_LOG_CHARS:]

    async def push(self, progress: int | None = None) -> bool:
        """Publish; False once the build was aborted."""
        if progress is not None:
            self.progress = progress
        async with AsyncSession(self.bind) as side, side.begin():
            status = (
                await side.execute(
                    update(BaseImage)
                    .where(BaseImage.id == self.image_id)
                    .values(logs=self.logs, progress=self.progress)
                    .returning(BaseImage.status)
                )
            ).scalar_one_or_none()
        return status == "building"

    async def finish(self, session: AsyncSession, status: str, **values: Any) -> None:
        """The final state, unless someone aborted the build meanwhile."""
        image = (
            await session.execute(
                update(BaseImage)
                .where(BaseImage.id == self.image_id, BaseImage.status == "building")
                .values(status=status, logs=self.logs, finished_at=utcnow(), **values)
                .returning(BaseImage)
            )
        ).scalar_one_or_none()
        if image is not None:
            finished = (
                ImageReady.of(image)
                if status == "ready"
                else ImageFailed.of(image, error=image.error)
            )
            await emit(session, finished)


@job("image.build")
async def build_image(ctx: JobContext, payload: dict[str, Any]) -> None:
    session, settings = ctx.session, ctx.settings
    image = await session.get(BaseImage, payload["image_id"])
    if image is None or image.status != "building":
        return
    recipe = image.recipe
    if "from_snapshot" in recipe:
        snap = await session.get(Snapshot, recipe["from_snapshot"])
        layer = await session.get(Layer, snap.layer_id) if snap else None
        if snap is None or layer is None or layer.status != "ready":
            image.status, image.error = "failed", "the snapshot no longer exists"
            image.finished_at = utcnow()
            await emit(session, ImageFailed.of(image, error=image.error))
            return
        # The image shares the snapshot's layer: nothing is copied.
        image.layer_id, image.server_id, image.rootfs = layer.id, layer.server_id, layer.rootfs
        _append(image, f"using snapshot {snap.id} ({snap.name}) as layer {layer.id}")
        image.status, image.progress, image.finished_at = "ready", 100, utcnow()
        await emit(session, ImageReady.of(image))
        return
    await _build_in_sandbox(session, settings, image, BuildReport(session, image))


class _Aborted(Exception):
    """The build was aborted meanwhile: stop, clean up, record nothing."""


class _StepFailed(Exception):
    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error[:500]


async def _watched(report: BuildReport, work: Awaitable[T]) -> T:
    """Run one build step, publishing logs and progress every second; an abort cancels the
    step (closing its stream to the node, which stops the work there)."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=PUBLISH_EVERY_S)
            if done:
                return task.result()
            if not await report.push():
                raise _Aborted()
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


async def _relay(
    events: AsyncIterator[dict[str, Any]], report: BuildReport, span: tuple[int, int]
) -> dict[str, Any]:
    """Follow a node build step's event stream (node/images.py) into the report."""
    low, high = span
    async for event in events:
        kind = event.get("type")
        if kind == "log":
            report.line(str(event.get("line", "")))
        elif kind == "progress":
            report.progress = low + (high - low) * int(event.get("percent", 0)) // 100
        elif kind == "done":
            return event
        elif kind == "error":
            message = str(event.get("message") or "the build step failed")
            report.line(message)
            raise _StepFailed(message.splitlines()[0] if message else message)
    raise _StepFailed("the compute server ended the build step early")


async def _run(
    node: NodeClient, build_id: str, command: str, report: BuildReport, env: dict[str, str]
) -> int:
    """Run a shell command in the build sandbox, its output streamed into the logs."""
    body = ExecStreamIn(command=command, timeout_s=BUILD_COMMAND_TIMEOUT_S, env=env)
    exit_code: int | None = None
    async for event in node.exec_stream(build_id, body):
        kind = event.get("type")
        if kind in ("stdout", "stderr"):
            out = base64.b64decode(event.get("data_b64") or "").decode(errors="replace")
            for line in out.splitlines():
                report.line(line)
        elif kind == "exit":
            exit_code = event.get("exit_code")
            if event.get("timed_out"):
                report.line(f"timed out after {BUILD_COMMAND_TIMEOUT_S} s")
        elif kind == "error":
            raise _StepFailed(str(event.get("message") or "the command could not run"))
    return -1 if exit_code is None else int(exit_code)


def _install_command(debs: list[str]) -> str:
    """Install fetched .debs offline in the sandbox (apt orders them; dpkg if apt is gone)."""
    files = " ".join(shlex.quote("./" + d.rsplit("/", 1)[-1]) for d in debs)
    return (
        f"cd {DEB_INBOX} && "
        "if command -v apt-get >/dev/null 2>&1; "
        f"then apt-get install -y -q --no-install-recommends {files}; "
        f"else dpkg -i {files}; fi; "
        f"rc=$?; cd / && rm -rf {DEB_INBOX}; apt-get clean >/dev/null 2>&1; exit $rc"
    )


async def _build_in_sandbox(
    session: AsyncSession, settings: Any, image: BaseImage, report: BuildReport
) -> None:
    """Build a version in a build sandbox and capture its disk as the version's layer.

    Suite recipes: the node debootstraps the suite (packages included) into the sandbox's new
    disk, and it boots on the empty `scratch` rootfs. Base-image recipes: the sandbox boots on
    the base image's stack; the node downloads the packages (the sandbox has no network) and
    apt installs them inside. Then the commands run, in order. An abort or a failure at any
    step leaves no sandbox, disk or layer behind."""
    recipe = image.recipe
    suite: str | None = recipe.get("suite")
    packages: list[str] = list(recipe.get("packages") or [])
    commands: list[str] = list(recipe.get("commands") or [])
    base: BaseImage | None = None
    lower: list[str] = []
    if suite:
        rootfs, image_id = SCRATCH_IMAGE, None
    else:
        base = await session.get(BaseImage, recipe["base_image"])
        if base is None or base.status != "ready":
            await report.finish(session, "failed", error="the base image is gone")
            return
        base_layer = await session.get(Layer, base.layer_id) if base.layer_id else None
        lower = [base_layer.id, *base_layer.lower_ids] if base_layer else []
        rootfs, image_id = base.rootfs, base.id
    build_id = _build_instance_id(image)
    node: NodeClient | None = None
    # progress: bootstrap or fetch+install first, commands up to 90, the capture last
    first = 60 if suite else (50 if packages else 5)
    try:
        # A server holding the base image's layers if one has room; else they are copied there.
        # Placed in its own short transaction: `place` locks the server rows, which must not
        # stay locked (heartbeats, other placements) for the minutes a build takes.
        async with AsyncSession(session.bind) as side, side.begin():
            server_id = (await place(side, settings, lower)).id
        server = await session.get(ComputeServer, server_id)
        assert server is not None
        node = await node_for(session, settings, server.id)
        # A crashed earlier attempt may have left its sandbox: start clean.
        await node.destroy(build_id)
        disk_mb = int(recipe.get("disk_mb") or 2048)
        if suite:
            report.line(f"bootstrapping Debian {suite} on server {server.id}")
            if not await report.push(0):
                raise _Aborted()
            await _watched(
                report,
                _relay(
                    node.bootstrap(
                        build_id, BootstrapIn(suite=suite, packages=packages, disk_mb=disk_mb)
                    ),
                    report,
                    (0, first),
                ),
            )
        else:
            assert base is not None
            report.line(f"booting a build sandbox on {base.family} v{base.version}")
            if not await report.push(0):
                raise _Aborted()
            copied = await ensure_on(session, settings, server.id, lower)
            if copied:
                report.line(f"copied layers {', '.join(copied)} to server {server.id}")
        await node.boot(
            build_id,
            SandboxSpecIn(
                image=rootfs,
                layer_ids=lower,
                vcpus=1,
                memory_mb=BUILD_MEMORY_MB,
                disk_mb=disk_mb,
                env={},
                hostname="image-build",
            ),
        )
        if packages and not suite:
            report.line(f"fetching {' '.join(packages)}")
            fetched = await _watched(
                report,
                _relay(
                    node.fetch_packages(build_id, PackagesIn(packages=packages)),
                    report,
                    (5, first // 2),
                ),
            )
            debs: list[str] = fetched.get("debs") or []
            if debs:
                report.line(f"$ apt-get install {' '.join(packages)}")
                await report.push(first // 2)
                rc = await _watched(
                    report, _run(node, build_id, _install_command(debs), report, APT_ENV)
                )
                if rc != 0:
                    raise _StepFailed(f"installing the packages exited {rc}")
            else:
                report.line("the packages are already installed")
        for i, command in enumerate(commands, start=1):
            report.line(f"$ {command}")
            if not await report.push(first + (90 - first) * (i - 1) // len(commands)):
                raise _Aborted()
            rc = await _watched(report, _run(node, build_id, command, report, {}))
            if rc != 0:
                raise _StepFailed(f"command {i} exited {rc}: {command}")
        report.line("capturing the image")
        if not await report.push(90):
            raise _Aborted()
        await node.stop(build_id)
        layer_id = new_id("lyr")
        data = await node.checkpoint(build_id, layer_id, timeout=300)
        stack = InstanceStack(
            instance_id=build_id, rootfs=rootfs, layer_ids=lower, image_id=image_id
        )
        layer = await add_layer(session, data, server.id, image.org_id, "image", stack)
        report.line(f"captured as layer {layer.id}")
        await report.finish(
            session,
            "ready",
            progress=100,
            layer_id=layer.id,
            server_id=server.id,
            rootfs=rootfs,
        )
        # Aborted during the capture: nothing references the new layer.
        await session.flush()
        await session.refresh(image)
        if image.status != "ready":
            await release(session, layer.id)
    except _Aborted:
        report.line("aborted")
    except _StepFailed as exc:
        report.line(f"failed: {exc.error}")
        await report.finish(session, "failed", error=exc.error, progress=report.progress)
    except ForkyardError as exc:  # the node, placement or a layer copy
        report.line(f"failed: {exc.message}")
        await report.finish(session, "failed", error=exc.message[:500], progress=report.progress)
    finally:
        if node is not None:
            await node.destroy(build_id)
