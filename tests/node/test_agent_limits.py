"""The node's agent client against an agent that breaks the rules (a tenant owns everything
inside its instance, the agent included): what the node holds stays bounded."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable

import pytest

from forkyard.guest import protocol as p
from forkyard.node.agent_client import AgentClient
from forkyard.node.errors import AgentUnavailable

MIB = 1024 * 1024

Peer = Callable[[socket.socket, int], None]


async def _client_with(peer: Peer) -> tuple[AgentClient, threading.Thread]:
    """An AgentClient on one end of a socket pair; `peer(sock, channel)` plays the agent on
    the other, once the first request has arrived."""
    ours, theirs = socket.socketpair()

    def agent() -> None:
        frame = p.read_frame(lambda n: theirs.recv(n))
        assert frame is not None and frame[0] == p.REQUEST
        try:
            peer(theirs, frame[1])
            while theirs.recv(65536):  # like an agent: hang up only after the node does
                pass
        except OSError:
            pass  # the node hung up on it
        finally:
            theirs.close()

    thread = threading.Thread(target=agent, daemon=True)
    thread.start()
    reader, writer = await asyncio.open_connection(sock=ours, limit=2 * p.MAX_PAYLOAD)
    return AgentClient(reader, writer), thread


async def test_an_agent_that_ignores_its_window_is_cut_off():
    def flood(sock: socket.socket, channel: int) -> None:
        chunk = p.encode(p.STDOUT, channel, b"x" * p.CHUNK_SIZE)
        for _ in range(64 * MIB // p.CHUNK_SIZE):  # far past the 1 MiB window, never waiting
            sock.sendall(chunk)

    client, thread = await _client_with(flood)
    stream = client.exec_stream("yes")
    received = 0
    with pytest.raises(AgentUnavailable):
        async with asyncio.timeout(10), stream:
            await asyncio.sleep(0.5)  # a slow consumer: the node grants nothing meanwhile
            async for ev in stream:
                received += len(ev.data)
    # the node held no more than one window of it before it hung up on the agent
    assert received <= p.INITIAL_WINDOW
    await client.close()
    thread.join(5)


async def test_output_past_the_cap_is_dropped_by_the_node():
    def chatty(sock: socket.socket, channel: int) -> None:
        # Within the window (it waits for credit), but ignoring the output cap, and lying
        # about it in its answer.
        credit, sent = p.INITIAL_WINDOW, 0
        decoder = p.Decoder()
        while sent < 3 * MIB:
            while credit < p.CHUNK_SIZE:
                decoder.feed(sock.recv(65536))
                while (frame := decoder.next_frame()) is not None:
                    if frame[0] == p.WINDOW:
                        credit += p.decode_window(frame[2])
            sock.sendall(p.encode(p.STDOUT, channel, b"y" * p.CHUNK_SIZE))
            credit -= p.CHUNK_SIZE
            sent += p.CHUNK_SIZE
        answer = {"ok": True, "exit_code": 0, "timed_out": False, "truncated": False}
        sock.sendall(p.encode_json(p.RESPONSE, channel, {**answer, "duration_ms": 1.0}))

    client, thread = await _client_with(chatty)
    result = await asyncio.wait_for(client.exec("yes", max_output=MIB), 10)
    assert len(result.stdout) == MIB and result.truncated
    await client.close()
    thread.join(5)


async def test_a_flood_of_tiny_frames_costs_no_more_than_its_bytes():
    def tiny(sock: socket.socket, channel: int) -> None:
        frames = b"".join(p.encode(p.STDOUT, channel, b"z") for _ in range(100_000))
        sock.sendall(frames)  # 100 000 one-byte frames, within the window
        answer = {"ok": True, "exit_code": 0, "timed_out": False, "truncated": False}
        sock.sendall(p.encode_json(p.RESPONSE, channel, {**answer, "duration_ms": 1.0}))

    client, thread = await _client_with(tiny)
    stream = client.exec_stream("yes")
    events = []
    async with stream:
        await asyncio.sleep(0.5)  # a slow consumer: everything arrives before it reads
        async for ev in stream:
            events.append(ev)
    data = b"".join(e.data for e in events if e.type == "stdout")
    assert data == b"z" * 100_000
    # merged as they queued: a few chunks, not a hundred thousand events
    assert len(events) <= 100_000 // p.CHUNK_SIZE + 10, len(events)
    await client.close()
    thread.join(5)
