"""The image build job: a snapshot's layer taken as is, or a build sandbox booted, packages
installed and commands run in it, its disk captured as the version's layer (the recipes: the
package's docstring). Logs and progress are published while it runs; an abort stops it."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import shlex
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from forkyard.compute.events import ImageFailed, ImageReady
from forkyard.compute.models import BaseImage, ComputeServer, InstanceStack, Layer, Snapshot
from forkyard.compute.node_client import NodeClient
from forkyard.compute.servers import node_for, place
from forkyard.compute.state.layers import add_layer, ensure_on, release
from forkyard.events import emit
from forkyard.jobs import job
from forkyard.jobs.queue import JobContext
from forkyard.kit.clock import utcnow
from forkyard.kit.errors import ForkyardError
from forkyard.kit.ids import new_id
from forkyard.node.contract import BootstrapIn, ExecStreamIn, PackagesIn, SandboxSpecIn
from forkyard.node.images import DEB_INBOX, SCRATCH_IMAGE

log = logging.getLogger("forkyard.compute.images")

BUILD_MEMORY_MB = 1024
BUILD_COMMAND_TIMEOUT_S = 1800
MAX_LOG_CHARS = 200_000
PUBLISH_EVERY_S = 1.0
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}
T = TypeVar("T")


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
    """Follow a node build step's event stream (node/images/) into the report."""
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
