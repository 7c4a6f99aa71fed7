"""The layer stream between nodes (node/layers/): a sparse disk image with its meta, verified
by SHA-256 and renamed into place; anything short of a complete, correct stream leaves nothing."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest

from forkyard.node.layers import (
    HonouredTickets,
    LayerInfo,
    LayerStore,
    LayerTransferFailed,
    LowerLayerMissing,
    check_export_ticket,
    export_stream,
    export_ticket,
    import_stream,
)

MB = 2**20


def make_layer(store: LayerStore, layer_id: str, lower: tuple[str, ...] = ()) -> LayerInfo:
    """A layer whose disk is 64 MB with 8 MB of random data in two extents (the rest holes)."""
    tmp = store.begin(layer_id)
    with open(tmp / "disk.img", "wb") as f:
        f.truncate(64 * MB)
        f.seek(1 * MB)
        f.write(os.urandom(3 * MB))
        f.seek(40 * MB)
        f.write(os.urandom(5 * MB) + b"tail")
    info = LayerInfo(
        layer_id=layer_id,
        path=store.path(layer_id),
        parent=None,
        lower=(*(store.get(x).upper for x in lower), Path("/images/a/rootfs")),
        filesystem="ext4",
        disk_mb=64,
        data_bytes=8 * MB,
        source_instance="inst_x",
        created_at="2026-01-01T00:00:00+00:00",
        pause_ms=1.0,
        capture_ms=2.0,
    )
    return store.commit(tmp, info)


def stores(tmp_path: Path) -> tuple[LayerStore, LayerStore]:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    return LayerStore(tmp_path / "a", "copy"), LayerStore(tmp_path / "b", "copy")


async def chunks(parts: Iterable[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def nothing_of(store: LayerStore, layer_id: str) -> bool:
    return not store.path(layer_id).exists() and not store.leftovers()


async def test_a_layer_chain_arrives_identical_sparse_and_on_the_targets_paths(tmp_path):
    a, b = stores(tmp_path)
    low = make_layer(a, "lyr_low")
    top = make_layer(a, "lyr_top", lower=("lyr_low",))
    image_b = Path("/images/b/rootfs")

    with pytest.raises(LowerLayerMissing):  # bottom-up only
        await import_stream(b, "lyr_top", chunks(export_stream(a, "lyr_top")), image_b)
    assert nothing_of(b, "lyr_top")

    got_low, received = await import_stream(
        b, "lyr_low", chunks(export_stream(a, "lyr_low")), image_b
    )
    assert 8 * MB + 4 <= received <= 8 * MB + 4096  # data extents, block-aligned
    got_top, _ = await import_stream(b, "lyr_top", chunks(export_stream(a, "lyr_top")), image_b)
    for src, dst in ((low, got_low), (top, got_top)):
        assert digest(dst.image) == digest(src.image)
        assert dst.image.stat().st_size == 64 * MB
        assert dst.image.stat().st_blocks * 512 < 16 * MB  # holes stay holes
        assert oct(dst.image.stat().st_mode & 0o777) == "0o444"
    assert b.get("lyr_top").lower == (b.get("lyr_low").upper, image_b)
    assert b.get("lyr_top").source_instance == "inst_x" and b.lower_refs(got_top.lower) == {
        "lyr_low"
    }


async def test_a_corrupt_or_truncated_stream_leaves_nothing(tmp_path):
    a, b = stores(tmp_path)
    make_layer(a, "lyr_one")
    parts = list(export_stream(a, "lyr_one"))
    whole = b"".join(parts)

    flipped = bytearray(whole)
    flipped[len(whole) // 2] ^= 0xFF  # a byte inside the data
    with pytest.raises(LayerTransferFailed):
        await import_stream(b, "lyr_one", chunks([bytes(flipped)]), None)
    assert nothing_of(b, "lyr_one")

    for cut in (5, 200, len(whole) // 3, len(whole) - 1):
        with pytest.raises(LayerTransferFailed):
            await import_stream(b, "lyr_one", chunks([whole[:cut]]), None)
        assert nothing_of(b, "lyr_one")

    with pytest.raises(LayerTransferFailed):  # a stream of another layer under this id
        await import_stream(b, "lyr_two", chunks([whole]), None)
    assert nothing_of(b, "lyr_two")

    # the intact stream, in odd-sized pieces, still arrives
    pieces = [whole[i : i + 777_777] for i in range(0, len(whole), 777_777)]
    await import_stream(b, "lyr_one", chunks(pieces), None)
    assert b.exists("lyr_one")


def test_export_tickets_are_per_layer_and_expire():
    ticket = export_ticket("s3cret", "lyr_a")
    assert check_export_ticket("s3cret", "lyr_a", ticket)
    assert not check_export_ticket("s3cret", "lyr_b", ticket)
    assert not check_export_ticket("other", "lyr_a", ticket)
    assert not check_export_ticket("s3cret", "lyr_a", "garbage")
    expired = export_ticket("s3cret", "lyr_a", ttl_s=-1)
    assert not check_export_ticket("s3cret", "lyr_a", expired)
    assert int(ticket.split(".")[0]) > time.time()


def test_an_export_ticket_is_honoured_once():
    honoured = HonouredTickets()
    ticket, other = export_ticket("s3cret", "lyr_a"), export_ticket("s3cret", "lyr_a")
    assert ticket != other  # each carries its own nonce
    assert check_export_ticket("s3cret", "lyr_a", ticket, honoured)
    assert not check_export_ticket("s3cret", "lyr_a", ticket, honoured)  # a replay
    assert check_export_ticket("s3cret", "lyr_a", other, honoured)
    # a forged nonce does not pass the MAC, so it cannot be used to probe the ledger
    expires, _, mac = ticket.split(".")
    assert not check_export_ticket("s3cret", "lyr_a", f"{expires}.x{mac[:8]}.{mac}", honoured)
