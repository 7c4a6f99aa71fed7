"""How to reach an instance over SSH (tag ssh)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import Request
from pydantic import BaseModel, Field

from forkyard.compute.service import get_instance
from forkyard.db.session import ReadSession
from forkyard.identity.deps import Writer, settings_of
from forkyard.identity.routing import protected_router
from forkyard.ssh.hostkey import fingerprint, load_host_key, public_line

router = protected_router("ssh", prefix="/v1/instances")


class SshAccessOut(BaseModel):
    host: str
    port: int
    username: str = Field(description="The instance id: SSH signs in as it.")
    command: str = Field(description="The OpenSSH command line that opens a shell.")
    host_key_fingerprint: str = Field(description="SHA256 fingerprint, as ssh prints it.")
    known_hosts_line: str = Field(description="A line for ~/.ssh/known_hosts.")


@lru_cache(maxsize=8)
def _host_key(data_dir: Path) -> tuple[str, str]:
    key = load_host_key(data_dir)
    return fingerprint(key), public_line(key)


@router.get("/{id}/ssh", response_model=SshAccessOut)
async def ssh_access(
    id: str, request: Request, session: ReadSession, principal: Writer
) -> SshAccessOut:
    """How to ssh into the instance with one of your account's SSH keys (members with write access)."""
    instance = await get_instance(session, principal, id)
    settings = settings_of(request)
    gateway = getattr(request.app.state, "ssh_gateway", None)
    port = gateway.port if gateway is not None else settings.ssh_port
    host = settings.ssh_public_host or urlsplit(settings.public_url).hostname or "localhost"
    fp, line = _host_key(settings.data_dir.resolve())
    target = f"{instance.id}@{host}"
    command = f"ssh {target}" if port == 22 else f"ssh -p {port} {target}"
    known_host = host if port == 22 else f"[{host}]:{port}"
    return SshAccessOut(
        host=host,
        port=port,
        username=instance.id,
        command=command,
        host_key_fingerprint=fp,
        known_hosts_line=f"{known_host} {line}",
    )
