"""Moving layers between nodes: the layer stream format, export tickets, export, import and
pull (see the comment below for the format)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import secrets
import struct
import time
from collections.abc import AsyncIterator, Generator
from dataclasses import replace
from pathlib import Path

import httpx

from forkyard.node import storage
from forkyard.node.errors import NodeError
from forkyard.node.layers.store import LayerInfo, LayerStore, check_layer_id

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
