"""`forkyard forward ID PORT`: a port inside an instance on a local port, as `ssh -L` gives it,
without an SSH key. Each local connection is one WebSocket tunnel through the API (`GET
/v1/instances/{id}/port-forwards/{forward_id}/connect`: binary messages both ways, an empty one
a half-close). The instance's forward for that port is used if it has one; otherwise one is
made for the command and deleted when it stops (`--keep` leaves it)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from forkyard.cli.client import Json, api_errors, client, err, fail

if TYPE_CHECKING:
    from forkyard_sdk import Forkyard

READ_SIZE = 256 * 1024
# Close codes of the tunnel (forwards/routes.py) a user can act on; refused credentials are
# refused at the handshake instead (HTTP 403).
TUNNEL_REFUSALS = {
    4404: "the port forward is gone",
    4409: "the instance is not running",
    4502: "nothing listens on the port inside the instance",
}


def forward(
    instance_id: str,
    port: Annotated[int, typer.Argument(help="The port inside the instance.", min=1, max=65535)],
    local_port: Annotated[
        int | None,
        typer.Option(
            "-p", "--local-port", help="The local port (default: the same; 0: any free one)."
        ),
    ] = None,
    bind: Annotated[str, typer.Option("--bind", help="The local address to listen on.")] = (
        "127.0.0.1"
    ),
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep a forward this command made when it stops.")
    ] = False,
    as_json: Json = False,
) -> None:
    """Reach a port inside an instance on a local port until Ctrl-C (each connection tunnelled
    through the API)."""
    with api_errors(), client() as fy:
        fwd, made = _forward_for(fy, instance_id, port)
        listen_on = port if local_port is None else local_port
        try:
            asyncio.run(_listen(fy, instance_id, fwd, bind, listen_on, as_json))
        finally:
            if made and not keep:
                fy.api.port_forwards.delete_port_forward(instance_id, fwd["id"])


def _forward_for(fy: Forkyard, instance_id: str, port: int) -> tuple[dict[str, Any], bool]:
    """The instance's forward of `port`, and whether it was made here."""
    page = fy.api.port_forwards.list_port_forwards(instance_id)
    for existing in page["data"]:
        if existing["port"] == port:
            return dict(existing), False
    made = fy.api.port_forwards.create_port_forward(instance_id, {"port": port, "protocol": "tcp"})
    return dict(made), True


async def _listen(
    fy: Forkyard, instance_id: str, fwd: dict[str, Any], bind: str, local_port: int, as_json: bool
) -> None:
    path = f"/v1/instances/{instance_id}/port-forwards/{fwd['id']}/connect"
    url = "ws" + fy.config.base_url.rstrip("/").removeprefix("http") + path  # https -> wss
    headers = {"Authorization": f"Bearer {fy.config.api_key}"}
    connections: set[asyncio.Task[None]] = set()

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        connections.add(task)
        try:
            await _tunnel(url, headers, reader, writer)
        finally:
            connections.discard(task)

    try:
        server = await asyncio.start_server(accepted, bind, local_port)
    except OSError as exc:
        fail("local_port_unavailable", f"Cannot listen on {bind}:{local_port}: {exc.strerror}.")
    address = server.sockets[0].getsockname()
    where = {"local": f"{address[0]}:{address[1]}", "instance_id": instance_id,
             "port": fwd["port"], "forward_id": fwd["id"]}  # fmt: skip
    if as_json:
        sys.stdout.write(json.dumps(where) + "\n")
        sys.stdout.flush()
    else:
        err.print(f"Forwarding {where['local']} -> {instance_id}:{fwd['port']} (Ctrl-C to stop)")

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()
        server.close()
        for task in list(connections):
            task.cancel()
        await asyncio.gather(*connections, return_exceptions=True)


async def _tunnel(
    url: str, headers: dict[str, str], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """One local connection through one tunnel, each side's end of data passed on as a
    half-close, until both have ended or either breaks."""
    import websockets
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    try:
        async with websockets.connect(
            url, additional_headers=headers, max_size=None, compression=None, ping_interval=None
        ) as ws:

            async def up() -> None:
                while data := await reader.read(READ_SIZE):
                    await ws.send(data)
                await ws.send(b"")

            async def down() -> None:
                async for message in ws:
                    if message in (b"", ""):
                        if writer.can_write_eof():
                            writer.write_eof()
                        return
                    writer.write(message if isinstance(message, bytes) else message.encode())
                    await writer.drain()

            sending = asyncio.ensure_future(up())
            try:
                await down()
                await sending  # the local side may still be sending after the instance's end
            finally:
                sending.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed, OSError):
                    await sending
            if ws.close_code not in (None, 1000) or ws.close_reason:
                _refused(ws.close_code, ws.close_reason)
    except InvalidStatus as exc:
        status = exc.response.status_code
        why = "the API key is not valid, or is read-only" if status in (401, 403) else "refused"
        err.print(f"[red]error[/]: the tunnel was refused ({status}): {why}", highlight=False)
    except ConnectionClosed as exc:
        if exc.rcvd is not None:
            _refused(exc.rcvd.code, exc.rcvd.reason)
    except OSError as exc:
        err.print(f"[red]error[/]: cannot reach the API: {exc.strerror or exc}")
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def _refused(code: int | None, reason: str | None) -> None:
    why = TUNNEL_REFUSALS.get(code or 0)
    if why is not None:
        err.print(f"[red]error[/]: {reason or code}: {why}", highlight=False)
