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

import contextlib
import json
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

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
