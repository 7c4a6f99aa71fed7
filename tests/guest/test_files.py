import os
import time

import pytest

from forkyard.node.errors import AgentOperationError


async def test_write_read_binary_and_mode(agent, tmp_path):
    data = bytes(range(256)) * 5000
    info = await agent.write_file(str(tmp_path / "a/b/c.bin"), data, mode=0o600)
    assert info.size == len(data) and info.mode == 0o600 and info.type == "file"
    assert await agent.read_file(str(tmp_path / "a/b/c.bin")) == data
    assert await agent.read_file(str(tmp_path / "a/b/c.bin"), offset=10, limit=5) == data[10:15]


async def test_write_without_parents_fails(agent, tmp_path):
    with pytest.raises(AgentOperationError) as exc:
        await agent.write_file(str(tmp_path / "no/such/x"), b"x", make_parents=False)
    assert exc.value.code == "not_found" and exc.value.status_code == 404
    # the channel stays in step after an error
    assert (await agent.write_file(str(tmp_path / "ok"), b"y")).size == 1


async def test_atomic_write_replaces(agent, tmp_path):
    p = str(tmp_path / "f")
    await agent.write_file(p, b"old")
    await agent.write_file(p, b"new content")
    assert await agent.read_file(p) == b"new content"
    assert sorted(e.name for e in await agent.list_dir(str(tmp_path))) == ["f"]


async def test_edit_zero_one_several(agent, tmp_path):
    p = str(tmp_path / "e.txt")
    await agent.write_file(p, "alpha beta beta gamma")
    none = await agent.edit_file(p, "delta", "x")
    assert (none.count, none.replaced, none.applied) == (0, 0, False)
    several = await agent.edit_file(p, "beta", "x")
    assert (several.count, several.replaced) == (2, 0)
    assert await agent.read_file(p) == b"alpha beta beta gamma"
    one = await agent.edit_file(p, "alpha", "ALPHA")
    assert (one.count, one.replaced) == (1, 1)
    every = await agent.edit_file(p, "beta", "b", replace_all=True)
    assert every.replaced == 2
    assert await agent.read_file(p) == b"ALPHA b b gamma"


async def test_list_depth_stat_mkdir_remove(agent, tmp_path):
    root = str(tmp_path)
    await agent.mkdir(f"{root}/d1/d2")
    await agent.write_file(f"{root}/d1/d2/f", b"123")
    await agent.write_file(f"{root}/top", b"1")
    one = await agent.list_dir(root)
    assert [(e.name, e.type) for e in one] == [("d1", "dir"), ("top", "file")]
    deep = await agent.list_dir(root, depth=3)
    assert {e.path for e in deep} == {
        f"{root}/d1",
        f"{root}/d1/d2",
        f"{root}/d1/d2/f",
        f"{root}/top",
    }
    st = await agent.stat(f"{root}/d1/d2/f")
    assert (st.size, st.type, st.name) == (3, "file", "f") and st.mtime > 0
    with pytest.raises(AgentOperationError) as exc:
        await agent.remove(f"{root}/d1")
    assert exc.value.code == "directory_not_empty"
    await agent.remove(f"{root}/d1", recursive=True)
    with pytest.raises(AgentOperationError) as exc:
        await agent.stat(f"{root}/d1")
    assert exc.value.code == "not_found"
    with pytest.raises(AgentOperationError) as exc:
        await agent.read_file(root)
    assert exc.value.code == "is_a_directory"


async def test_reads_refuse_what_is_not_a_regular_file_at_once(agent, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # no writer: a plain open() would block forever
    for path in ("/dev/zero", str(fifo), "/dev/urandom"):
        started = time.monotonic()
        with pytest.raises(AgentOperationError) as refused:
            await agent.read_file(path)
        assert refused.value.code == "not_a_regular_file", path
        assert time.monotonic() - started < 2, path
    with pytest.raises(AgentOperationError) as edited:
        await agent.edit_file(str(fifo), "a", "b")
    assert edited.value.code == "not_a_regular_file"
    # the connection serves on
    assert (await agent.stat(str(fifo))).type == "other"


async def test_reads_are_bounded(agent, tmp_path):
    big = tmp_path / "big"
    big.write_bytes(b"x" * 300_000)
    with pytest.raises(AgentOperationError) as whole:
        await agent.read_file(str(big), max_size=100_000)
    assert whole.value.code == "file_too_large"
    # a range is never more than the bound, whatever limit asks
    assert len(await agent.read_file(str(big), limit=250_000, max_size=100_000)) == 100_000
    assert len(await agent.read_file(str(big), offset=200_000, max_size=100_000)) == 100_000
    # a file whose size the kernel does not report is read to the bound
    status = await agent.read_file("/proc/self/status", max_size=64)
    assert len(status) == 64
    # streamed: chunks of at most one frame, the whole file across them
    async with await agent.read_stream(str(big), max_size=None) as chunks:
        sizes = [len(c) async for c in chunks]
    assert sum(sizes) == 300_000 and max(sizes) <= 64 * 1024
