"""The gateway's host key: generated on first start, kept in the data dir (0600), the same on
every start after, so clients' known_hosts stay valid."""

from __future__ import annotations

import os
from pathlib import Path

import asyncssh

HOST_KEY_FILE = "ssh-host-key"


def load_host_key(data_dir: Path) -> asyncssh.SSHKey:
    """The installation's ed25519 host key, made once (atomically: two processes starting
    together end with one key)."""
    path = data_dir / HOST_KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        key = asyncssh.generate_private_key("ssh-ed25519")
        tmp = path.with_name(f".{HOST_KEY_FILE}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.export_private_key())
        try:
            os.link(tmp, path)  # fails if another process made it first: theirs is kept
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return asyncssh.read_private_key(str(path))


def fingerprint(key: asyncssh.SSHKey) -> str:
    """SHA256:... as `ssh-keygen -l` and the client's prompt print it."""
    return str(key.get_fingerprint("sha256"))


def public_line(key: asyncssh.SSHKey) -> str:
    """`ssh-ed25519 AAAA...`: what a known_hosts line holds after the host name."""
    return key.export_public_key("openssh").decode().strip()
