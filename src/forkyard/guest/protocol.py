"""The framed, multiplexed wire format shared by the guest agent and the node's client.

A plain byte stream (unix socket now, a serial port later) carries frames:

    +----------------+--------+----------------+-------------------+
    | length (u32 BE)| type u8| channel u32 BE | payload (length)  |
    +----------------+--------+----------------+-------------------+

`length` counts the payload only. Control frames carry UTF-8 JSON; data frames carry raw bytes,
so process output and file contents are binary-safe. The client picks a fresh channel id per
call; every frame of that call (request, data, events, final response) carries it.

Flow control is credit based, per channel and per direction: a sender may have at most
INITIAL_WINDOW data bytes that the receiver has not yet granted back with a WINDOW frame
(payload: u32 BE increment). So a slow consumer stalls only its own channel, and neither side
buffers more than a window per channel.

Standard library only and valid on Python 3.9: the guest imports this module inside the image.
"""

from __future__ import annotations

import json
import struct

# typing costs the agent's cold start milliseconds; the annotations are strings (from
# __future__), so only type checkers need these.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

HEADER = struct.Struct(">IBI")
HEADER_SIZE = HEADER.size  # 9
MAX_PAYLOAD = 4 * 1024 * 1024  # a larger frame means a corrupt or hostile stream
CHUNK_SIZE = 64 * 1024  # data frames are cut to this size
INITIAL_WINDOW = 1024 * 1024
PROTOCOL_VERSION = 1

# frame types
REQUEST = 1  # client -> agent, JSON {"op": ..., ...}: opens a channel
RESPONSE = 2  # agent -> client, JSON {"ok": true, ...} or {"ok": false, "error": {...}}: closes it
EVENT = 3  # agent -> client, JSON {"event": "start" | "exit", ...}
STDIN = 4  # client -> agent data (exec stdin, file contents to write); empty payload = EOF
STDOUT = 5  # agent -> client data (exec stdout, file contents read)
STDERR = 6  # agent -> client data (exec stderr)
CONTROL = 7  # client -> agent, JSON on an open channel: {"signal": N} or {"cancel": true}
WINDOW = 8  # either way: u32 BE credit increment for data on this channel

DATA_TYPES = frozenset((STDIN, STDOUT, STDERR))
JSON_TYPES = frozenset((REQUEST, RESPONSE, EVENT, CONTROL))

# error codes carried in {"ok": false, "error": {"code": ..., "message": ...}}
E_NOT_FOUND = "not_found"
E_EXISTS = "already_exists"
E_NOT_A_DIRECTORY = "not_a_directory"
E_IS_A_DIRECTORY = "is_a_directory"
E_NOT_EMPTY = "directory_not_empty"
E_PERMISSION = "permission_denied"
E_NO_SPACE = "no_space"
E_INVALID = "invalid_request"
E_SPAWN = "spawn_failed"
E_NOT_REGULAR = "not_a_regular_file"  # a read or edit of a device, FIFO or socket
E_TOO_LARGE = "file_too_large"  # a whole-file read or edit over the caller's bound
E_INTERNAL = "internal"


class ProtocolError(Exception):
    """The byte stream is not a valid frame sequence."""


def encode(ftype: int, channel: int, payload: bytes = b"") -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    return HEADER.pack(len(payload), ftype, channel) + payload


def encode_json(ftype: int, channel: int, obj: dict[str, Any]) -> bytes:
    return encode(ftype, channel, json.dumps(obj, separators=(",", ":")).encode("utf-8"))


def encode_window(channel: int, increment: int) -> bytes:
    return encode(WINDOW, channel, struct.pack(">I", increment))


def decode_header(header: bytes) -> tuple[int, int, int]:
    """Return (payload length, type, channel), refusing impossible lengths."""
    length, ftype, channel = HEADER.unpack(header)
    if length > MAX_PAYLOAD:
        raise ProtocolError(f"frame length {length} exceeds {MAX_PAYLOAD}")
    return length, ftype, channel


def decode_json(payload: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"bad JSON payload: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("JSON payload is not an object")
    return obj


def decode_window(payload: bytes) -> int:
    if len(payload) != 4:
        raise ProtocolError("WINDOW payload must be 4 bytes")
    return int(struct.unpack(">I", payload)[0])


class Decoder:
    """Incremental decoder: feed bytes as they arrive, take whole frames out."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next_frame(self) -> tuple[int, int, bytes] | None:
        """Return (type, channel, payload) for the next complete frame, or None."""
        if len(self._buf) < HEADER_SIZE:
            return None
        length, ftype, channel = decode_header(bytes(self._buf[:HEADER_SIZE]))
        end = HEADER_SIZE + length
        if len(self._buf) < end:
            return None
        payload = bytes(self._buf[HEADER_SIZE:end])
        del self._buf[:end]
        return ftype, channel, payload

    def pending(self) -> int:
        return len(self._buf)


def read_exact(read, n: int) -> bytes | None:
    """Read n bytes with a blocking read(size) callable; None on a clean EOF before any byte."""
    chunks = []
    got = 0
    while got < n:
        chunk = read(n - got)
        if not chunk:
            if got == 0:
                return None
            raise ProtocolError("stream ended inside a frame")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_frame(read) -> tuple[int, int, bytes] | None:
    """Read one frame from a blocking read(size) callable; None on EOF between frames."""
    header = read_exact(read, HEADER_SIZE)
    if header is None:
        return None
    length, ftype, channel = decode_header(header)
    payload = read_exact(read, length) if length else b""
    if payload is None:
        raise ProtocolError("stream ended inside a frame")
    return ftype, channel, payload
