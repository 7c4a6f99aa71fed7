"""The node's layer store: immutable captures of instance disks, shared by reflink.

Layout, under the store directory (<data_dir>/store, see `open_store`):
    disks/<instance_id>.img   each instance's writable disk (overlay upper + work), a sparse image
    layers/<layer_id>/        one immutable layer:
        meta.json             parent, lower stack, filesystem, sizes, timings
        disk.img              a reflink clone of the instance's frozen disk (read-only, 0444)
        root/                 mount point: the image mounted read-only when used as a lowerdir
    layers/.tmp-<id>-*        a capture in progress (removed on failure and by the sweeper)

A layer is the instance's *writable* layer at capture time; `lower` in meta.json is the stack it
sat on (other layers' upper dirs, then the image), so [layer, *lower] is its whole filesystem.
New instances, rollbacks and forks get a reflink clone of disk.img as their disk: zero bytes
copied, blocks shared until either side writes (XFS copy-on-write).

Mode: "reflink" when the store's filesystem clones files (the data dir's own filesystem, or an XFS
volume the node formats in <data_dir>/layers.xfs and loop-mounts at <data_dir>/store), "copy"
otherwise (clones become sparse byte copies: correct, slow).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import shutil
import struct
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Generator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import httpx

from forkyard.kit.clock import utcnow
from forkyard.node import storage
from forkyard.node.errors import NodeError

StorageMode = Literal["reflink", "copy"]
VOLUME_NAME = "layers.xfs"
DEFAULT_VOLUME_CAP_MB = 1024 * 1024  # 1 TiB: the sparse volume never claims more than this
MIN_VOLUME_MB = 2048


class LayerNotFound(NodeError):
    status_code = 404
    code = "layer_not_found"
    message = "No such layer on this node."


class LayerExists(NodeError):
    status_code = 409
    code = "layer_exists"
    message = "A layer with this id already exists."


class LayerInUse(NodeError):
    status_code = 409
    code = "layer_in_use"
    message = "The layer is still referenced."

    def __init__(self, message: str, *, instances: list[str], layers: list[str]) -> None:
        super().__init__(message)
        self.instances = instances
        self.layers = layers


class InvalidLayerId(NodeError):
    status_code = 400
    code = "invalid_layer_id"
    message = "Layer ids are 1-63 characters: letters, digits, '_' and '-'."


@dataclass(frozen=True)
class LayerInfo:
    layer_id: str
    path: Path  # the layer's directory
    parent: str | None  # the layer this one's disk was cloned from (rollback/fork origin), if any
    lower: tuple[Path, ...]  # the stack below it, topmost first, image last
    filesystem: str  # of disk.img: "xfs" | "ext4"
    disk_mb: int
    data_bytes: int  # used inside the captured filesystem
    source_instance: str | None
    created_at: str
    pause_ms: float  # processes frozen
    capture_ms: float  # the whole capture, pre-flush included

    @property
    def image(self) -> Path:
        return self.path / "disk.img"

    @property
    def upper(self) -> Path:
        """The captured writable layer, usable as a lowerdir once `mount_layer` ran."""
        return self.path / "root" / "upper"

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        d["lower"] = [str(p) for p in self.lower]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LayerInfo:
        return cls(
            layer_id=d["layer_id"],
            path=Path(d["path"]),
            parent=d.get("parent"),
            lower=tuple(Path(p) for p in d["lower"]),
            filesystem=d["filesystem"],
            disk_mb=d["disk_mb"],
            data_bytes=d.get("data_bytes", 0),
            source_instance=d.get("source_instance"),
            created_at=d["created_at"],
            pause_ms=d.get("pause_ms", 0.0),
            capture_ms=d.get("capture_ms", 0.0),
        )


def check_layer_id(layer_id: str) -> str:
    if not isinstance(layer_id, str) or not storage.INSTANCE_ID_RE.match(layer_id):
        raise InvalidLayerId(f"invalid layer id {layer_id!r}")
    return layer_id


def open_store(data_dir: Path, size_mb: int | None = None) -> tuple[Path, StorageMode, Path | None]:
    """Ready <data_dir>/store; returns (store dir, mode, volume image or None).

    The data dir's own filesystem is used when it clones files; otherwise an XFS volume
    (`mkfs.xfs -m reflink=1` on a sparse file) is created once and mounted there. If that fails
    too (no mkfs.xfs, no loop devices) the store is a plain directory in "copy" mode.
    """
    store = data_dir / "store"
    volume = data_dir / VOLUME_NAME
    store.mkdir(parents=True, exist_ok=True)
    if storage.is_mountpoint(store):
        return store, _probe(store), volume if volume.exists() else None
    if not volume.exists() and storage.reflink_works(store):
        return store, "reflink", None
    try:
        if not volume.exists():
            _make_volume(volume, size_mb or _default_volume_mb(data_dir))
        subprocess.run(
            ["mount", "-o", "loop,noatime", str(volume), str(store)],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return store, _probe(store), None
    return store, _probe(store), volume


def close_store(store: Path) -> None:
    """Unmount layer roots and the store volume (nothing may be running on it)."""
    for mp in storage.mounts_under(store):
        storage.unmount(mp)


def _probe(store: Path) -> StorageMode:
    return "reflink" if storage.reflink_works(store) else "copy"


def _default_volume_mb(data_dir: Path) -> int:
    st = os.statvfs(data_dir)
    free_mb = st.f_bavail * st.f_frsize // 2**20
    return max(MIN_VOLUME_MB, min(DEFAULT_VOLUME_CAP_MB, free_mb * 9 // 10))


def _make_volume(volume: Path, size_mb: int) -> None:
    tmp = volume.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.truncate(size_mb * 2**20)
    try:
        subprocess.run(
            ["mkfs.xfs", "-q", "-f", "-m", "reflink=1", str(tmp)], check=True, capture_output=True
        )
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, volume)


class LayerStore:
    """Immutable layers in <store>/layers. Not async: callers run the slow parts in a thread."""

    def __init__(self, store: Path, mode: StorageMode) -> None:
        self.store = store
        self.mode: StorageMode = mode
        self.layers_dir = store / "layers"
        self.disks_dir = store / "disks"
        self.layers_dir.mkdir(exist_ok=True)
        self.disks_dir.mkdir(exist_ok=True)

    def path(self, layer_id: str) -> Path:
        return self.layers_dir / check_layer_id(layer_id)

    def exists(self, layer_id: str) -> bool:
        return (self.path(layer_id) / "meta.json").exists()

    def get(self, layer_id: str) -> LayerInfo:
        try:
            data = json.loads((self.path(layer_id) / "meta.json").read_text())
        except FileNotFoundError:
            raise LayerNotFound(f"no layer {layer_id} on this node") from None
        return LayerInfo.from_json(data)

    def all(self) -> list[LayerInfo]:
        out = []
        for entry in sorted(self.layers_dir.iterdir()):
            if entry.name.startswith(".") or not (entry / "meta.json").exists():
                continue
            with contextlib.suppress(LayerNotFound, ValueError, KeyError):
                out.append(self.get(entry.name))
        return out

    def clone(self, src: Path, dst: Path) -> None:
        storage.clone_file(src, dst, reflink_only=self.mode == "reflink")

    def begin(self, layer_id: str) -> Path:
        """A fresh temp dir for a capture of layer_id (LayerExists if the id is taken)."""
        if self.path(layer_id).exists():
            raise LayerExists(f"layer {layer_id} already exists")
        tmp = self.layers_dir / f".tmp-{layer_id}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        return tmp

    def commit(self, tmp: Path, info: LayerInfo) -> LayerInfo:
        """Write meta.json and move the capture into place, durably."""
        (tmp / "root").mkdir(exist_ok=True)
        meta = tmp / "meta.json"
        meta.write_text(json.dumps(info.to_json(), indent=1))
        os.chmod(tmp / "disk.img", 0o444)
        storage.syncfs(tmp)
        try:
            os.rename(tmp, info.path)
        except OSError as e:
            raise LayerExists(f"layer {info.layer_id} already exists") from e
        return info

    def abort(self, tmp: Path) -> None:
        shutil.rmtree(tmp, ignore_errors=True)

    def new_info(
        self,
        layer_id: str,
        *,
        parent: str | None,
        lower: tuple[Path, ...],
        image: Path,
        disk_mb: int,
        data_bytes: int,
        source_instance: str | None,
        pause_ms: float,
        capture_ms: float,
    ) -> LayerInfo:
        return LayerInfo(
            layer_id=layer_id,
            path=self.path(layer_id),
            parent=parent,
            lower=lower,
            filesystem=storage.image_filesystem(image),
            disk_mb=disk_mb,
            data_bytes=data_bytes,
            source_instance=source_instance,
            created_at=utcnow().isoformat(),
            pause_ms=round(pause_ms, 2),
            capture_ms=round(capture_ms, 2),
        )

    def layer_of_path(self, p: Path) -> str | None:
        """The layer id whose mounted root holds path p (a lowerdir), else None."""
        try:
            rel = Path(p).relative_to(self.layers_dir).parts
        except ValueError:
            return None
        return rel[0] if rel and not rel[0].startswith(".") else None

    async def mount(self, layer_id: str) -> Path:
        """Mount the layer read-only (idempotent); returns its upper dir, for a lowerdir stack."""
        info = self.get(layer_id)
        await storage.mount_disk(info.image, info.path / "root", readonly=True)
        return info.upper

    def lower_refs(self, lower: tuple[Path, ...] | list[Path]) -> set[str]:
        return {lid for p in lower if (lid := self.layer_of_path(p)) is not None}

    def remove(self, layer_id: str) -> None:
        """Unmount and delete one layer. Renamed away first, so it vanishes atomically."""
        path = self.path(layer_id)
        for mp in storage.mounts_under(path):
            storage.unmount(mp)
        trash = self.layers_dir / f".trash-{layer_id}-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(path, trash)
        except FileNotFoundError:
            raise LayerNotFound(f"no layer {layer_id} on this node") from None
        shutil.rmtree(trash, ignore_errors=True)

    def leftovers(self) -> list[Path]:
        """Temp and trash dirs of interrupted captures/deletes."""
        return [e for e in self.layers_dir.iterdir() if e.name.startswith((".tmp-", ".trash-"))]

    def usage(self) -> dict[str, Any]:
        st = os.statvfs(self.store)
        return {
            "path": str(self.store),
            "total_bytes": st.f_blocks * st.f_frsize,
            "used_bytes": (st.f_blocks - st.f_bfree) * st.f_frsize,
            "free_bytes": st.f_bavail * st.f_frsize,
        }


def elapsed_ms(t0: float) -> float:
    return (time.monotonic() - t0) * 1000


# --- moving layers between nodes ---
#
# A layer is a directory around one file, disk.img: a filesystem image that already carries
# every owner, mode, xattr, device node, symlink and hardlink of the captured tree. So a layer
# travels as that image, sparse (only its data extents are sent), plus its meta.json; the
# receiving node rewrites the paths in meta.json (its own store, its own image) and keeps the
# id. The stream ("forkyard-layer/1"):
#     b"FYLAYER1\n", a JSON header line {"meta", "lower_layers", "image", "image_size"}
#     frames: >QQ (offset, length) then `length` bytes of disk.img at `offset`
#     end:    >QQ (END, total data bytes) then the SHA-256 of everything before it (32 bytes)
# The target pulls it from the source (GET /node/layers/{id}/export) with a short-lived ticket
# the source minted for the control plane, writes into a temp dir, checks the digest, and
# renames the layer into place: a failed import leaves nothing, a repeated one is a no-op.

STREAM_MAGIC = b"FYLAYER1\n"
FRAME = struct.Struct(">QQ")
END_OF_FRAMES = 2**64 - 1
CHUNK = 4 * 2**20
MAX_HEADER = 1 * 2**20
TICKET_TTL_S = 600


class LayerTransferFailed(NodeError):
    status_code = 502
    code = "layer_transfer_failed"
    message = "The layer could not be copied from the other node; nothing was kept."


class LayerSourceUnreachable(NodeError):
    status_code = 502
    code = "layer_source_unreachable"
    message = "The node holding the layer did not answer."


class LowerLayerMissing(NodeError):
    status_code = 409
    code = "lower_layer_missing"
    message = "A layer this one stacks on is not on this node; import it first."


class LayerNotPortable(NodeError):
    status_code = 409
    code = "layer_not_portable"
    message = "The layer stacks on paths that are not store layers; it cannot be exported."


def export_ticket(secret: str, layer_id: str, ttl_s: int = TICKET_TTL_S) -> str:
    """A credential for one GET /node/layers/{layer_id}/export, valid for ttl_s: the source
    honours it once (HonouredTickets), so a ticket seen in transit cannot pull the layer again."""
    expires = int(time.time()) + ttl_s
    nonce = secrets.token_hex(12)
    return f"{expires}.{nonce}.{_ticket_mac(secret, layer_id, expires, nonce)}"


class HonouredTickets:
    """The nonces of the tickets this node has honoured, each remembered until its ticket
    expires (after which the ticket is refused for its age anyway)."""

    def __init__(self) -> None:
        self._until: dict[str, int] = {}

    def claim(self, nonce: str, expires: int) -> bool:
        """True the first time a nonce is presented, False ever after (until it expires)."""
        now = time.time()
        if self._until:
            self._until = {n: t for n, t in self._until.items() if t >= now}
        if nonce in self._until:
            return False
        self._until[nonce] = expires
        return True


def check_export_ticket(
    secret: str, layer_id: str, ticket: str, honoured: HonouredTickets | None = None
) -> bool:
    """Whether the ticket opens this layer's export now; with `honoured`, it is spent by this
    check (a second presentation is refused)."""
    try:
        expires_s, nonce, mac = ticket.split(".", 2)
        expires = int(expires_s)
    except ValueError:
        return False
    if expires < time.time() or not nonce:
        return False
    if not hmac.compare_digest(mac, _ticket_mac(secret, layer_id, expires, nonce)):
        return False
    return honoured is None or honoured.claim(nonce, expires)


def _ticket_mac(secret: str, layer_id: str, expires: int, nonce: str) -> str:
    msg = f"layer-export:{layer_id}:{expires}:{nonce}".encode()
    return hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()


def export_stream(store: LayerStore, layer_id: str) -> Generator[bytes, None, None]:
    """The layer as a forkyard-layer/1 stream, in chunks of up to CHUNK bytes (blocking: run
    each step in a thread). Layers are immutable, so no lock is needed while it is read."""
    info = store.get(layer_id)
    *stack, image = info.lower or (Path("default"),)
    lower_ids = []
    for p in stack:
        lid = store.layer_of_path(p)
        if lid is None:
            raise LayerNotPortable(f"layer {layer_id} stacks on {p}, which is no store layer")
        lower_ids.append(lid)
    fd = os.open(info.image, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        header = json.dumps(
            {
                "meta": info.to_json(),
                "lower_layers": lower_ids,
                "image": str(image),
                "image_size": size,
            }
        ).encode()
        digest = hashlib.sha256()
        first = STREAM_MAGIC + header + b"\n"
        digest.update(first)
        yield first
        total = 0
        out = bytearray()  # small extents (filesystem metadata) travel together
        for start, length in list(storage.data_extents(fd, size)):
            offset = start
            while offset < start + length:
                n = min(CHUNK, start + length - offset)
                data = os.pread(fd, n, offset)
                if not data:
                    break
                frame = FRAME.pack(offset, len(data))
                digest.update(frame)
                digest.update(data)
                total += len(data)
                offset += len(data)
                out += frame
                out += data
                if len(out) >= CHUNK:
                    yield bytes(out)
                    out.clear()
        end = FRAME.pack(END_OF_FRAMES, total)
        digest.update(end)
        yield bytes(out) + end + digest.digest()
    finally:
        os.close(fd)


class _StreamReader:
    """Exact reads over an async iterator of byte chunks."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self.chunks = chunks
        self.buf = bytearray()

    async def _fill(self, n: int) -> None:
        while len(self.buf) < n:
            try:
                chunk = await anext(self.chunks)
            except StopAsyncIteration:
                raise LayerTransferFailed("the layer stream ended early") from None
            self.buf += chunk

    async def read(self, n: int) -> bytes:
        await self._fill(n)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    async def readline(self, limit: int) -> bytes:
        while b"\n" not in self.buf:
            if len(self.buf) > limit:
                raise LayerTransferFailed("the layer stream's header is too long")
            await self._fill(len(self.buf) + 1)
        i = self.buf.index(b"\n") + 1
        out = bytes(self.buf[:i])
        del self.buf[:i]
        return out


async def import_stream(
    store: LayerStore, layer_id: str, chunks: AsyncIterator[bytes], image: Path | None
) -> tuple[LayerInfo, int]:
    """Receive a forkyard-layer/1 stream as layer `layer_id`: written to a temp dir, verified
    against its digest, renamed into place. `image` is this node's path of the layer's base
    image (None: keep the path the source had). Returns (info, data bytes received).
    Anything short of a verified stream leaves nothing behind."""
    tmp = await asyncio.to_thread(store.begin, layer_id)
    committed = False
    try:
        reader = _StreamReader(chunks)
        digest = hashlib.sha256()
        magic = await reader.read(len(STREAM_MAGIC))
        if magic != STREAM_MAGIC:
            raise LayerTransferFailed("not a layer stream")
        line = await reader.readline(MAX_HEADER)
        digest.update(magic + line)
        header = json.loads(line)
        meta = header["meta"]
        if meta.get("layer_id") != layer_id:
            raise LayerTransferFailed(f"the stream holds layer {meta.get('layer_id')}")
        lower_ids = [check_layer_id(x) for x in header["lower_layers"]]
        missing = [x for x in lower_ids if not store.exists(x)]
        if missing:
            raise LowerLayerMissing(
                f"layer {layer_id} stacks on {', '.join(missing)}, not on this node"
            )
        size = int(header["image_size"])
        received = 0

        def write(fd: int, frame: bytes, data: bytes, offset: int) -> None:
            digest.update(frame)
            digest.update(data)
            os.pwrite(fd, data, offset)

        with open(tmp / "disk.img", "wb") as f:
            f.truncate(size)
            fd = f.fileno()
            # One write (and hash) in a thread while the next frame arrives; in stream order.
            writing: asyncio.Future[None] | None = None
            try:
                while True:
                    frame = await reader.read(FRAME.size)
                    offset, length = FRAME.unpack(frame)
                    if offset == END_OF_FRAMES:
                        break
                    if length > CHUNK or offset + length > size:
                        raise LayerTransferFailed("the layer stream is malformed")
                    data = await reader.read(length)
                    if writing is not None:
                        await writing
                    writing = asyncio.ensure_future(
                        asyncio.to_thread(write, fd, frame, data, offset)
                    )
                    received += length
            finally:
                if writing is not None:
                    await asyncio.shield(writing)
            digest.update(frame)
            expected = await reader.read(32)
            if length != received or not hmac.compare_digest(expected, digest.digest()):
                raise LayerTransferFailed("the layer stream failed verification")
            await asyncio.to_thread(os.fsync, fd)
        source = LayerInfo.from_json(meta)
        base = image if image is not None else Path(header["image"])
        info = replace(
            source,
            path=store.path(layer_id),
            lower=(*(store.get(x).upper for x in lower_ids), base),
        )
        await asyncio.to_thread(store.commit, tmp, info)
        committed = True
        return info, received
    except (ValueError, KeyError, TypeError, struct.error) as exc:
        raise LayerTransferFailed(f"the layer stream is malformed: {exc}") from exc
    finally:
        if not committed:
            await asyncio.to_thread(store.abort, tmp)


def transfer_client() -> httpx.AsyncClient:
    """One per node process, reused: a new client costs ~50 ms (CA bundle) per transfer."""
    return httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=5.0))


async def pull_layer(
    store: LayerStore,
    layer_id: str,
    source_url: str,
    ticket: str,
    image: Path | None,
    client: httpx.AsyncClient,
) -> tuple[LayerInfo, int]:
    """Copy a layer from another node (see import_stream)."""
    url = f"{source_url.rstrip('/')}/node/layers/{check_layer_id(layer_id)}/export"
    try:
        async with client.stream("GET", url, headers={TICKET_HEADER: ticket}) as r:
            if r.status_code >= 400:
                body = (await r.aread())[:300].decode(errors="replace")
                raise LayerTransferFailed(
                    f"the source refused the export ({r.status_code}): {body}"
                )
            return await import_stream(store, layer_id, r.aiter_raw(CHUNK), image)
    except httpx.ConnectError as exc:
        raise LayerSourceUnreachable(f"cannot reach {source_url}: {exc}") from exc
    except httpx.HTTPError as exc:
        raise LayerTransferFailed(f"the transfer broke off: {exc!r}") from exc


TICKET_HEADER = "X-Forkyard-Layer-Ticket"
