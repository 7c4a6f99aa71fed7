"""The account's SSH public keys (tag account_ssh_keys): validated, fingerprinted, unique per
account. The SSH gateway authenticates users with them."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from fastapi import Depends, Response
from pydantic import BaseModel, Field
from sqlalchemy import select

from forkyard.audit.service import record
from forkyard.db.session import DbSession
from forkyard.identity.deps import UserPrincipal, require_account
from forkyard.identity.models import SshKey
from forkyard.identity.routing import protected_router
from forkyard.kit.errors import Conflict, NotFound, ValidationFailed
from forkyard.kit.ids import has_prefix
from forkyard.kit.pagination import Page, PageParams, page_params, paginate

router = protected_router(
    "account_ssh_keys", prefix="/v1/account/ssh-keys", requires=require_account
)

MIN_RSA_BITS = 2048
MAX_KEYS = 100


class SshKeyExists(Conflict):
    code = "ssh_key_exists"
    message = "This key is already on your account."


class SshKeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    public_key: str = Field(
        min_length=20, max_length=16384, description="One OpenSSH public key line"
    )


class SshKeyOut(BaseModel):
    id: str
    name: str
    key_type: str
    fingerprint: str
    public_key: str
    created_at: datetime
    last_used_at: datetime | None


def _invalid(msg: str) -> ValidationFailed:
    return ValidationFailed(
        "The public key is not acceptable.",
        details={"fields": [{"loc": ["body", "public_key"], "msg": msg}]},
    )


def parse_public_key(line: str) -> tuple[str, str, str]:
    """(key type, canonical `type base64` text, SHA256 fingerprint as OpenSSH prints it)."""
    parts = line.strip().split()
    if len(parts) < 2 or "\n" in line.strip():
        raise _invalid("expected one line: `<type> <base64> [comment]`")
    key_type, blob_b64 = parts[0], parts[1]
    try:
        blob = base64.b64decode(blob_b64, validate=True)
        key = serialization.load_ssh_public_key(f"{key_type} {blob_b64}".encode())
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise _invalid("not a valid OpenSSH public key") from exc
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise _invalid(f"RSA keys need at least {MIN_RSA_BITS} bits")
    elif not isinstance(key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey):
        raise _invalid("use an ed25519, ECDSA or RSA (2048+ bits) key")
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return key_type, f"{key_type} {blob_b64}", f"SHA256:{digest}"


def _out(key: SshKey) -> SshKeyOut:
    return SshKeyOut(
        id=key.id,
        name=key.name,
        key_type=key.key_type,
        fingerprint=key.fingerprint,
        public_key=key.public_key,
        created_at=key.created_at,
        last_used_at=key.last_used_at,
    )


@router.get("", response_model=Page[SshKeyOut])
async def list_ssh_keys(
    session: DbSession, principal: UserPrincipal, params: PageParams = Depends(page_params)
) -> Page[SshKeyOut]:
    """Your SSH public keys, newest first."""
    query = select(SshKey).where(SshKey.user_id == principal.user_id)
    rows, next_cursor = await paginate(session, query, SshKey, params)
    return Page(data=[_out(k) for k in rows], next_cursor=next_cursor)


@router.post("", response_model=SshKeyOut, status_code=201)
async def add_ssh_key(
    body: SshKeyCreate, session: DbSession, principal: UserPrincipal
) -> SshKeyOut:
    """Add an SSH public key (ed25519, ECDSA, or RSA of 2048 bits or more)."""
    key_type, canonical, fingerprint = parse_public_key(body.public_key)
    existing = list(
        (await session.execute(select(SshKey).where(SshKey.user_id == principal.user_id))).scalars()
    )
    if any(k.fingerprint == fingerprint for k in existing):
        raise SshKeyExists(details={"fingerprint": fingerprint})
    if len(existing) >= MAX_KEYS:
        raise Conflict(f"An account holds at most {MAX_KEYS} SSH keys.")
    key = SshKey(
        user_id=principal.user_id,
        name=body.name.strip(),
        key_type=key_type,
        public_key=canonical,
        fingerprint=fingerprint,
    )
    session.add(key)
    await session.flush()
    await record(
        session,
        "ssh_key.added",
        principal=principal,
        target_type="ssh_key",
        target_id=key.id,
        data={"fingerprint": fingerprint},
    )
    return _out(key)


@router.delete("/{id}", status_code=204)
async def delete_ssh_key(id: str, session: DbSession, principal: UserPrincipal) -> Response:
    """Remove an SSH public key."""
    key = await session.get(SshKey, id) if has_prefix(id, "sshk") else None
    if key is None or key.user_id != principal.user_id:
        raise NotFound.of("SSH key", id)
    await session.delete(key)
    await record(
        session,
        "ssh_key.removed",
        principal=principal,
        target_type="ssh_key",
        target_id=id,
        data={"fingerprint": key.fingerprint},
    )
    return Response(status_code=204)
