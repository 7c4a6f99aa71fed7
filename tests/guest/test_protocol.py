import os
import struct

import pytest

from forkyard.guest import protocol as p


def test_frame_round_trip_binary_payload():
    payload = bytes(range(256)) * 100 + b"\x00\xff\n\r"
    frame = p.encode(p.STDOUT, 7, payload)
    assert frame[:9] == struct.pack(">IBI", len(payload), p.STDOUT, 7)
    d = p.Decoder()
    d.feed(frame)
    assert d.next_frame() == (p.STDOUT, 7, payload)
    assert d.next_frame() is None


def test_decoder_reassembles_frames_fed_byte_by_byte():
    frames = [
        (p.REQUEST, 1, {"op": "exec", "cmd": "echo ü"}),
        (p.STDIN, 1, os.urandom(1000)),
        (p.STDIN, 1, b""),
        (p.WINDOW, 2, struct.pack(">I", 65536)),
    ]
    stream = b""
    for ftype, ch, body in frames:
        stream += (
            p.encode_json(ftype, ch, body) if isinstance(body, dict) else p.encode(ftype, ch, body)
        )
    d = p.Decoder()
    out = []
    for i in range(len(stream)):
        d.feed(stream[i : i + 1])
        while (f := d.next_frame()) is not None:
            out.append(f)
    assert [(t, c) for t, c, _ in out] == [(t, c) for t, c, _ in frames]
    assert p.decode_json(out[0][2]) == frames[0][2]
    assert out[1][2] == frames[1][2]
    assert out[2][2] == b""
    assert p.decode_window(out[3][2]) == 65536
    assert d.pending() == 0


def test_blocking_reader_and_eof():
    import io

    buf = io.BytesIO(p.encode_json(p.RESPONSE, 3, {"ok": True}) + p.encode(p.STDERR, 4, b"x"))
    assert p.read_frame(buf.read) == (p.RESPONSE, 3, b'{"ok":true}')
    assert p.read_frame(buf.read) == (p.STDERR, 4, b"x")
    assert p.read_frame(buf.read) is None
    truncated = io.BytesIO(p.encode(p.STDOUT, 1, b"abcdef")[:-2])
    with pytest.raises(p.ProtocolError):
        p.read_frame(truncated.read)


def test_oversized_frames_are_refused():
    with pytest.raises(p.ProtocolError):
        p.encode(p.STDOUT, 1, b"x" * (p.MAX_PAYLOAD + 1))
    d = p.Decoder()
    d.feed(struct.pack(">IBI", p.MAX_PAYLOAD + 1, p.STDOUT, 1))
    with pytest.raises(p.ProtocolError):
        d.next_frame()


def test_bad_json_is_a_protocol_error():
    with pytest.raises(p.ProtocolError):
        p.decode_json(b"\xff")
    with pytest.raises(p.ProtocolError):
        p.decode_json(b"[1]")
