"""API keys: org-bound, scoped, shown once, stored as SHA-256 hashes (tag api_keys)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Depends, Response
from pydantic import AwareDatetime, BaseModel, Field, field_validator
from sqlalchemy import select

from forkyard.audit.service import record
from forkyard.db.session import DbSession
from forkyard.db.tenancy import get_owned, owned
from forkyard.events import Actor, emit
from forkyard.identity.deps import Reader, SudoPrincipal, Writer, require_account
from forkyard.identity.events import ApiKeyCreated, ApiKeyRevoked, ApiKeyRotated
from forkyard.identity.models import ApiKey
from forkyard.identity.principal import ALL_SCOPES, Principal
from forkyard.identity.routing import protected_router
from forkyard.kit.clock import utcnow
from forkyard.kit.crypto import random_token, token_hash
from forkyard.kit.errors import Forbidden, NotFound, ValidationFailed
from forkyard.kit.pagination import Page, PageParams, page_params, paginate

router = protected_router("api_keys", prefix="/v1/api-keys")


class ApiKeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    scopes: list[str] | None = Field(
        default=None,
        description="Any of read, write, admin, account (acts on your own account: profile,"
        " SSH keys, new keys); default read+write.",
    )
    # Aware only: a zoneless time is ambiguous (and cannot be compared with ours).
    expires_at: AwareDatetime | None = None

    @field_validator("scopes")
    @classmethod
    def _known_scopes(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            unknown = sorted(set(value) - set(ALL_SCOPES))
            if unknown:
                raise ValueError(f"unknown scopes: {', '.join(unknown)}")
            if not value:
                raise ValueError("give at least one scope")
        return value


class ApiKeyOut(BaseModel):
    id: str
    org_id: str
    name: str
    prefix: str
    scopes: list[str]
    created_by: str | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    last_used_ip: str | None
    revoked_at: datetime | None


class ApiKeyWithSecret(ApiKeyOut):
    key: str = Field(description="The secret. Shown only in this response; store it now.")


def _out(key: ApiKey) -> ApiKeyOut:
    return ApiKeyOut(
        id=key.id,
        org_id=key.org_id,
        name=key.name,
        prefix=key.prefix,
        scopes=list(key.scopes),
        created_by=key.created_by,
        created_at=key.created_at,
        expires_at=key.expires_at,
        last_used_at=key.last_used_at,
        last_used_ip=key.last_used_ip,
        revoked_at=key.revoked_at,
    )


def _new_secret() -> str:
    return "fy_" + random_token(30)


async def _get_key(session: DbSession, principal: Principal, id: str) -> ApiKey:
    key = await get_owned(session, ApiKey, id, principal, kind="API key")
    if key.is_internal:
        raise NotFound.of("API key", id)
    return key


def _may_manage(principal: Principal, key: ApiKey) -> bool:
    return principal.can("admin") or (
        principal.user_id is not None and key.created_by == principal.user_id
    )


@router.post(
    "",
    status_code=201,
    response_model=ApiKeyWithSecret,
    dependencies=[Depends(require_account)],
)
async def create_api_key(
    body: ApiKeyCreate, session: DbSession, principal: Writer
) -> ApiKeyWithSecret:
    """Create a key for the current org; the secret is returned once."""
    scopes = sorted(set(body.scopes or ["read", "write"]))
    if not set(scopes) <= principal.scopes:
        raise Forbidden("A key cannot have scopes its creator lacks.", details={"scopes": scopes})
    if body.expires_at is not None and body.expires_at <= utcnow():
        raise ValidationFailed(
            "expires_at must be in the future.",
            details={"fields": [{"loc": ["body", "expires_at"], "msg": "must be in the future"}]},
        )
    secret = _new_secret()
    key = ApiKey(
        org_id=principal.org_id,
        created_by=principal.user_id,
        name=body.name.strip(),
        prefix=secret[:10],
        key_hash=token_hash(secret),
        scopes=scopes,
        expires_at=body.expires_at,
    )
    session.add(key)
    await session.flush()
    await emit(session, ApiKeyCreated.of(key, Actor.of(principal)))
    await record(
        session,
        "api_key.created",
        principal=principal,
        target_type="api_key",
        target_id=key.id,
        data={"scopes": scopes, "name": key.name},
    )
    return ApiKeyWithSecret(**_out(key).model_dump(), key=secret)


@router.get("", response_model=Page[ApiKeyOut])
async def list_api_keys(
    session: DbSession, principal: Reader, page: Annotated[PageParams, Depends(page_params)]
) -> Page[ApiKeyOut]:
    """The org's keys (never their secrets), newest first."""
    stmt = owned(select(ApiKey), principal).where(ApiKey.is_internal.is_(False))
    rows, cursor = await paginate(session, stmt, ApiKey, page)
    return Page(data=[_out(k) for k in rows], next_cursor=cursor)


@router.get("/{id}", response_model=ApiKeyOut)
async def get_api_key(id: str, session: DbSession, principal: Reader) -> ApiKeyOut:
    """One key's metadata: scopes, expiry and last use."""
    return _out(await _get_key(session, principal, id))


@router.delete("/{id}", status_code=204)
async def revoke_api_key(id: str, session: DbSession, principal: Writer) -> Response:
    """Revoke a key; it stops working at once."""
    key = await _get_key(session, principal, id)
    if not _may_manage(principal, key):
        raise Forbidden("Only the key's creator or an org admin can revoke it.")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        await emit(session, ApiKeyRevoked.of(key, Actor.of(principal)))
        await record(
            session, "api_key.revoked", principal=principal, target_type="api_key", target_id=key.id
        )
    return Response(status_code=204)


@router.post("/{id}/rotate", response_model=ApiKeyWithSecret)
async def rotate_api_key(id: str, session: DbSession, principal: SudoPrincipal) -> ApiKeyWithSecret:
    """Replace a key's secret (sudo): the old secret stops working, the new one is shown once."""
    key = await _get_key(session, principal, id)
    if not _may_manage(principal, key) or not principal.can("write"):
        raise Forbidden("Only the key's creator or an org admin can rotate it.")
    if key.revoked_at is not None:
        from forkyard.kit.errors import Conflict

        raise Conflict("A revoked key cannot be rotated.", details={"id": key.id})
    secret = _new_secret()
    key.key_hash = token_hash(secret)
    key.prefix = secret[:10]
    key.last_used_at = None
    await emit(session, ApiKeyRotated.of(key, Actor.of(principal)))
    await record(
        session, "api_key.rotated", principal=principal, target_type="api_key", target_id=key.id
    )
    return ApiKeyWithSecret(**_out(key).model_dump(), key=secret)
