"""Prefixed, sortable, opaque ids: `inst_01J...` (a ULID-like time-ordered random part)."""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case

PREFIXES = {
    "user": "usr",
    "org": "org",
    "member": "mem",
    "session": "ses",
    "api_key": "key",
    "invitation": "inv",
    "allowlist": "ipa",
    "audit": "aud",
    "job": "job",
    "instance": "inst",
    "vm": "vm",
    "server": "srv",
    "profile": "prof",
    "exec": "exec",
    "snapshot": "snap",
    "checkpoint": "ckpt",
    "image": "img",
    "mfa_factor": "mfa",
    "ssh_key": "sshk",
    "request": "req",
    "webhook": "whk",
    "event": "evt",
    "run": "run",
    "port_forward": "pf",
}


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """A new id: prefix, then 10 chars of milliseconds and 16 chars of randomness (sortable)."""
    ms = int(time.time() * 1000)
    rand = int.from_bytes(os.urandom(10), "big")
    return f"{prefix}_{_encode(ms, 10)}{_encode(rand, 16)}"


def has_prefix(value: str, prefix: str) -> bool:
    head, sep, tail = value.partition("_")
    return bool(sep) and head == prefix and len(tail) == 26 and all(c in _ALPHABET for c in tail)


def id_floor(prefix: str, at_ms: int) -> str:
    """The least id of `prefix` made at `at_ms` (milliseconds since the epoch): every id made at
    or after it sorts above it (a time bound on the primary key: retention, stream windows)."""
    return f"{prefix}_{_encode(at_ms, 10)}{'0' * 16}"
