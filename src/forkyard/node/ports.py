"""Reaching a TCP port inside an instance from the node (docs/adr/0013-port-forwards.md).

An instance has no network device but its own loopback. The node, host root, makes a socket
inside the instance's network namespace (setns from a dedicated thread, then back), connects
it to 127.0.0.1:port and relays bytes from there in its own event loop: a socket keeps the
namespace it was made in, so nothing inside the instance takes part and nothing of the host's
network is reachable from it. The instance's own user namespace (ADR 0010) does not matter:
host root holds CAP_SYS_ADMIN over every namespace a child user namespace owns.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import logging
import os
import socket
import threading

from forkyard.node.errors import NodeError

log = logging.getLogger("forkyard.node.ports")

CLONE_NEWNET = 0x40000000
CONNECT_TIMEOUT_S = 5.0
# One read from the app, sent as one WebSocket message (forwards/tunnel.py MAX_FRAME): fewer,
# larger hops per megabyte.
RELAY_CHUNK = 1024 * 1024

_libc = ctypes.CDLL(None, use_errno=True)


class PortRefused(NodeError):
    status_code = 502
    code = "port_refused"
    message = "Nothing inside the instance accepts connections on that port."


class PortUnreachable(NodeError):
    status_code = 502
    code = "port_unreachable"
    message = "The port inside the instance did not answer."


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class _NamespaceThread:
    """One thread that enters namespaces and makes sockets there, so no other thread of the
    node (the event loop's above all) ever changes namespace. Should returning to the host's
    namespace ever fail, that thread is abandoned and never used again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool = self._new_pool()

    @staticmethod
    def _new_pool() -> concurrent.futures.ThreadPoolExecutor:
        return concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="forkyard-netns")

    def _make_socket(self, netns_path: str) -> socket.socket:
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            target = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(target)
            finally:
                os.close(target)
            try:
                return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            finally:
                try:
                    _setns(own)
                except OSError:
                    log.critical("could not return to the host's network namespace")
                    with self._lock:
                        self._pool.shutdown(wait=False)
                        self._pool = self._new_pool()
                    raise
        finally:
            os.close(own)

    async def socket_in(self, netns_path: str) -> socket.socket:
        with self._lock:
            pool = self._pool
        return await asyncio.get_running_loop().run_in_executor(pool, self._make_socket, netns_path)


_namespaces = _NamespaceThread()


async def connect(
    netns_path: str, port: int, *, timeout: float = CONNECT_TIMEOUT_S
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection to 127.0.0.1:`port` inside the network namespace at `netns_path`."""
    try:
        sock = await _namespaces.socket_in(netns_path)
    except FileNotFoundError as exc:  # the sandbox went away between the lookup and here
        raise PortUnreachable("The instance is not running.") from exc
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", port)), timeout)
        return await asyncio.open_connection(sock=sock, limit=RELAY_CHUNK)
    except ConnectionRefusedError as exc:
        sock.close()
        raise PortRefused(details={"port": port}) from exc
    except (TimeoutError, OSError) as exc:
        sock.close()
        raise PortUnreachable(details={"port": port}) from exc
