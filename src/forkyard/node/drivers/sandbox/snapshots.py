"""Layers of the sandbox driver: checkpoint, rollback and fork of instances, and the layer
store's housekeeping (delete, sweep, usage). Every capture and clone goes through
node/layers/'s LayerStore; what is here is when the instance is frozen, flushed, stopped
or booted again around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forkyard.node import storage
from forkyard.node.cgroups import InstanceCgroup
from forkyard.node.drivers.base import Driver, InstanceInfo, SandboxSpec
from forkyard.node.errors import InstanceNotFound
from forkyard.node.layers import (
    LayerInfo,
    LayerInUse,
    LayerStore,
    StorageMode,
    check_layer_id,
    elapsed_ms,
)


class LayerOps(Driver):
    """The layer half of SandboxDriver (which supplies the members declared below)."""

    layers: LayerStore
    store_volume: Path | None
    _mount_lock: asyncio.Lock

    if TYPE_CHECKING:

        def cgroup(self, instance_id: str) -> InstanceCgroup: ...
        def load_spec(self, instance_id: str) -> SandboxSpec | None: ...
        def storage_mode(self) -> StorageMode: ...
        def _set_origin(self, instance_id: str, layer_id: str | None) -> None: ...
        async def _start(self, spec: SandboxSpec) -> InstanceInfo: ...
        async def _teardown(self, instance_id: str) -> None: ...

    async def checkpoint(self, instance_id: str, layer_id: str) -> LayerInfo:
        """Capture the instance's disk as a new immutable layer. A running instance is flushed,
        then frozen (cgroup freezer + FIFREEZE) only for the clone. On failure: thawed, no layer
        left, the instance keeps running, the error is raised."""
        check_layer_id(layer_id)
        async with self._lock(instance_id):
            return await self._checkpoint(instance_id, layer_id)

    async def _checkpoint(self, instance_id: str, layer_id: str) -> LayerInfo:
        t0 = time.monotonic()
        spec = self.load_spec(instance_id)
        disk = self.disk_image(instance_id)
        if spec is None or not disk.exists():
            raise InstanceNotFound(f"no instance {instance_id} on this node")
        mnt = self.instance_dir(instance_id) / "disk"
        mounted = storage.is_mountpoint(mnt)
        tmp = await asyncio.to_thread(self.layers.begin, layer_id)
        try:
            data_bytes = 0
            if mounted:
                data_bytes = storage.disk_usage(mnt)[0]
                # Flush the bulk while the instance still runs: the pause then only covers
                # what was written since.
                await asyncio.to_thread(storage.syncfs, mnt)
            pause_ms = await asyncio.to_thread(
                self._capture, instance_id, disk, tmp / "disk.img", mnt if mounted else None
            )
            info = self.layers.new_info(
                layer_id,
                parent=self.origin(instance_id),
                lower=(*spec.layers, spec.image),
                image=tmp / "disk.img",
                disk_mb=spec.disk_mb,
                data_bytes=data_bytes,
                source_instance=instance_id,
                pause_ms=pause_ms,
                capture_ms=elapsed_ms(t0),
            )
            await asyncio.to_thread(self.layers.commit, tmp, info)
        except BaseException:
            await asyncio.to_thread(self.layers.abort, tmp)
            raise
        self._set_origin(instance_id, layer_id)
        return info

    def _capture(self, instance_id: str, disk: Path, dest: Path, mnt: Path | None) -> float:
        """Freeze processes, make the disk image clean, clone it, thaw. Returns the pause in ms.

        Every writer of an instance's disk is a process of its cgroup (file calls go through the
        agent, which is one). Once the freezer reports FROZEN, nothing can change the
        filesystem: syncfs then writes out what the processes left dirty and checkpointing the
        journal makes the image clean: the same image FIFREEZE gives, without freeze_super's
        RCU grace periods (~40 ms of pause on this machine, against ~5). If the cgroup does not
        reach FROZEN (a task stuck in uninterruptible sleep) or the filesystem cannot checkpoint
        its journal (not ext4), FIFREEZE quiesces it instead."""
        cg = self.cgroup(instance_id)
        t = time.monotonic()
        cg_frozen = fs_frozen = False
        try:
            if mnt is not None:
                if cg.exists():
                    cg.freeze(True)
                    cg_frozen = True
                quiet = cg_frozen and _frozen(cg)
                if quiet:
                    storage.syncfs(mnt)
                if not (quiet and storage.checkpoint_journal(mnt)):
                    storage.freeze_fs(mnt)  # writes back and quiesces: a clean on-disk image
                    fs_frozen = True
            self.layers.clone(disk, dest)
        finally:
            if fs_frozen:
                storage.thaw_fs(mnt)  # type: ignore[arg-type]
            if cg_frozen:
                cg.freeze(False)
        return elapsed_ms(t)

    async def rollback(self, instance_id: str, layer_id: str) -> InstanceInfo | None:
        """The instance's filesystem becomes exactly the layer's: processes stop, the disk is
        replaced by a clone of the layer's, and a running instance boots again (memory is not
        kept). Returns the new InstanceInfo, or None for a stopped instance (it stays stopped).
        If the new disk cannot boot, the old disk and spec are put back and the error raised."""
        async with self._lock(instance_id):
            layer = self.layers.get(layer_id)
            spec = self.load_spec(instance_id)
            disk = self.disk_image(instance_id)
            if spec is None or not disk.exists():
                raise InstanceNotFound(f"no instance {instance_id} on this node")
            was_running = self.state(instance_id) == "running"
            old_origin = self.origin(instance_id)
            new = disk.with_name(disk.name + ".rollback")
            old = disk.with_name(disk.name + ".old")
            for f in (new, old):
                f.unlink(missing_ok=True)
            await asyncio.to_thread(self.layers.clone, layer.image, new)
            await self._teardown(instance_id)
            new_spec = _spec_on(spec, layer)
            os.replace(disk, old)
            os.replace(new, disk)
            self._set_origin(instance_id, layer_id)
            d = self.instance_dir(instance_id)
            (d / "spec.json").write_text(json.dumps(new_spec.to_json()))
            try:
                info = await self._start(new_spec) if was_running else None
            except BaseException:
                await self._teardown(instance_id)
                os.replace(old, disk)
                self._set_origin(instance_id, old_origin)
                (d / "spec.json").write_text(json.dumps(spec.to_json()))
                if was_running:
                    with contextlib.suppress(Exception):
                        await self._start(spec)
                raise
            await asyncio.to_thread(old.unlink, missing_ok=True)
            return info

    async def fork(
        self, parent_id: str, child_specs: list[SandboxSpec], *, layer_id: str | None = None
    ) -> list[InstanceInfo | Exception]:
        """Capture the parent once (as layer `layer_id`, generated if None; it stays in the
        store for the caller to keep or delete), then boot every child on a clone of it, in
        parallel. The parent keeps running. Each child's image, layers and disk_mb come from
        the parent; the result holds, in order, each child's InstanceInfo or its error (a child
        that failed leaves nothing behind)."""
        layer_id = check_layer_id(layer_id or f"fork-{uuid.uuid4().hex[:16]}")
        await self.checkpoint(parent_id, layer_id)
        results = await asyncio.gather(
            *(self.start(s, from_layer=layer_id) for s in child_specs), return_exceptions=True
        )
        out: list[InstanceInfo | Exception] = []
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, Exception):
                raise r
            out.append(r)
        return out

    def get_layer(self, layer_id: str) -> LayerInfo:
        return self.layers.get(layer_id)

    def list_layers(self) -> list[LayerInfo]:
        return self.layers.all()

    def _references(self) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
        """layer id -> instances whose lower stack uses it, and -> layers stacked on it."""
        by_instance: dict[str, set[str]] = {}
        for instance_id in self.list_owned():
            spec = self.load_spec(instance_id)
            if spec is not None:
                for lid in self.layers.lower_refs(spec.layers):
                    by_instance.setdefault(lid, set()).add(instance_id)
        by_layer: dict[str, set[str]] = {}
        for layer in self.layers.all():
            for lid in self.layers.lower_refs(layer.lower):
                by_layer.setdefault(lid, set()).add(layer.layer_id)
        return by_instance, by_layer

    async def delete_layer(self, layer_id: str) -> None:
        """Delete a layer (LayerNotFound if absent); LayerInUse while an instance or another
        layer on this node stacks on it. Clones made from it (rollbacks, forks) do not count:
        their blocks stay theirs."""
        check_layer_id(layer_id)
        async with self._mount_lock:
            self.layers.get(layer_id)
            by_instance, by_layer = self._references()
            insts = sorted(by_instance.get(layer_id, ()))
            lays = sorted(by_layer.get(layer_id, ()))
            if insts or lays:
                raise LayerInUse(
                    f"layer {layer_id} is used by {', '.join(insts + lays)}",
                    instances=insts,
                    layers=lays,
                )
            await asyncio.to_thread(self.layers.remove, layer_id)

    async def sweep_layers(self, keep: set[str]) -> set[str]:
        """Remove every layer not in `keep` and not stacked under a kept layer or an instance
        of this node, and leftovers of interrupted captures. Returns the removed ids."""
        async with self._mount_lock:
            by_instance, _ = self._references()
            layers = {layer.layer_id: layer for layer in self.layers.all()}
            live = {lid for lid in keep | set(by_instance) if lid in layers}
            todo = list(live)
            while todo:  # everything below a live layer is live
                for lid in self.layers.lower_refs(layers[todo.pop()].lower):
                    if lid in layers and lid not in live:
                        live.add(lid)
                        todo.append(lid)
            removed = set(layers) - live
            for lid in sorted(removed):
                await asyncio.to_thread(self.layers.remove, lid)
            for leftover in self.layers.leftovers():
                await asyncio.to_thread(storage.remove_tree, leftover)
            return removed

    def layer_usage(self) -> dict[str, Any]:
        """The vm-storage report: mode, store space, each layer with what references it, and
        each instance's disk. Allocated bytes count reflink-shared blocks in every file that
        shares them; the store's used_bytes is the physical truth."""
        by_instance, by_layer = self._references()
        layers = []
        for layer in self.layers.all():
            layers.append(
                {
                    **layer.to_json(),
                    "allocated_bytes": storage.allocated_bytes(layer.image),
                    "mounted": storage.is_mountpoint(layer.path / "root"),
                    "referenced_by": {
                        "instances": sorted(by_instance.get(layer.layer_id, ())),
                        "layers": sorted(by_layer.get(layer.layer_id, ())),
                    },
                }
            )
        instances = []
        for instance_id in sorted(self.list_owned()):
            spec = self.load_spec(instance_id)
            instances.append(
                {
                    "instance_id": instance_id,
                    "state": self.state(instance_id),
                    "origin": self.origin(instance_id),
                    "layers": sorted(self.layers.lower_refs(spec.layers)) if spec else [],
                    "disk_allocated_bytes": storage.allocated_bytes(self.disk_image(instance_id)),
                }
            )
        return {
            "mode": self.storage_mode(),
            "volume": str(self.store_volume) if self.store_volume else None,
            "store": self.layers.usage(),
            "layers": layers,
            "instances": instances,
        }


def _spec_on(spec: SandboxSpec, layer: LayerInfo) -> SandboxSpec:
    """`spec` with the layer's lower stack and disk size (its disk will be the layer's clone)."""
    return replace(spec, layers=layer.lower[:-1], image=layer.lower[-1], disk_mb=layer.disk_mb)


def _frozen(cg: InstanceCgroup) -> bool:
    """Whether the freezer reports every task of the cgroup frozen (not merely FREEZING)."""
    try:
        return (cg.path("freezer") / "freezer.state").read_text().strip() == "FROZEN"
    except OSError:
        return False
