import asyncio
import os
import signal
import time

import pytest

from forkyard.node.errors import AgentOperationError


def _alive(pattern: str) -> bool:
    import subprocess

    return subprocess.run(["pgrep", "-f", pattern], capture_output=True).returncode == 0


async def test_exit_code_stdout_stderr(agent):
    r = await agent.exec("echo out; echo err >&2; exit 3")
    assert (r.exit_code, r.stdout, r.stderr) == (3, b"out\n", b"err\n")
    assert not r.timed_out and not r.truncated
    assert r.duration_ms > 0


async def test_argv_is_not_shell_parsed(agent):
    r = await agent.exec(["echo", "$HOME", "a b"])
    assert r.stdout == b"$HOME a b\n"


async def test_missing_program_is_a_spawn_error(agent):
    with pytest.raises(AgentOperationError) as exc:
        await agent.exec(["/no/such/program"])
    assert exc.value.code == "spawn_failed"


async def test_stdin_env_and_cwd(agent, tmp_path):
    r = await agent.exec(
        "cat; echo $FOO; pwd", stdin=b"in\x00put\n", env={"FOO": "bar"}, cwd=str(tmp_path)
    )
    assert r.stdout == b"in\x00put\nbar\n" + str(tmp_path).encode() + b"\n"


async def test_large_stdin(agent):
    data = os.urandom(5_000_000)
    r = await agent.exec(["sha256sum"], stdin=data)
    import hashlib

    assert r.stdout.split()[0].decode() == hashlib.sha256(data).hexdigest()


async def test_exit_by_signal(agent):
    r = await agent.exec("kill -TERM $$")
    assert r.exit_code == 128 + signal.SIGTERM and r.signal == signal.SIGTERM


async def test_timeout_kills_the_whole_group(agent):
    marker = f"sleep 31{os.getpid() % 1000:03d}"
    t = time.monotonic()
    r = await agent.exec(f"{marker} & {marker}; echo never", timeout=0.5)
    assert time.monotonic() - t < 3
    assert r.timed_out and r.exit_code == 137 and b"never" not in r.stdout
    await asyncio.sleep(0.1)
    assert not _alive(marker), "backgrounded grandchild survived the timeout"


async def test_large_binary_output(agent):
    r = await agent.exec(
        "head -c 20000000 /dev/urandom | tee /dev/stderr | sha256sum >&2", max_output=50_000_000
    )
    assert r.exit_code == 0 and not r.truncated
    import hashlib

    assert len(r.stderr) == 20_000_000 + 68
    body, digest = r.stderr[:20_000_000], r.stderr[20_000_000:]
    assert hashlib.sha256(body).hexdigest() == digest.split()[0].decode()


async def test_output_truncation_flag(agent):
    r = await agent.exec("head -c 5000000 /dev/zero", max_output=1000)
    assert r.truncated and len(r.stdout) == 1000 and r.exit_code == 0


async def test_concurrent_execs(agent):
    results = await asyncio.gather(*[agent.exec(f"sleep 0.2; echo {i}") for i in range(20)])
    assert [r.stdout for r in results] == [f"{i}\n".encode() for i in range(20)]


async def test_stream_events_and_cancel_kills_group(agent):
    events = []
    async for ev in agent.exec_stream("echo a; echo b >&2; exit 4"):
        events.append(ev)
    assert events[0].type == "start" and events[0].pid
    assert events[-1].type == "exit" and events[-1].exit_code == 4
    assert b"".join(e.data for e in events if e.type == "stdout") == b"a\n"
    assert b"".join(e.data for e in events if e.type == "stderr") == b"b\n"

    marker = f"sleep 32{os.getpid() % 1000:03d}"
    stream = agent.exec_stream(f"{marker} & echo started; {marker}")
    async for ev in stream:
        if ev.type == "stdout":
            break
    await stream.aclose()
    await asyncio.sleep(0.2)
    assert not _alive(marker)


async def test_streamed_stdin_and_signal(agent):
    stream = agent.exec_stream("cat", stdin_pipe=True)
    async with stream:
        await stream.write(b"hello ")
        await stream.write(b"world")
        await stream.close_stdin()
        out = b""
        async for ev in stream:
            if ev.type == "stdout":
                out += ev.data
            if ev.type == "exit":
                assert ev.exit_code == 0
        assert out == b"hello world"

    stream = agent.exec_stream(
        "trap 'echo got; exit 7' USR1; echo ready; while :; do sleep 0.05; done"
    )
    async for ev in stream:
        if ev.type == "stdout" and b"ready" in ev.data:
            await stream.signal(signal.SIGUSR1, group=False)
        if ev.type == "exit":
            assert ev.exit_code == 7
    await stream.aclose()


async def test_ping(agent):
    info = await agent.ping()
    assert info["uptime_s"] >= 0 and len(info["load"]) == 3
