"""Everything stored about the calling user, as one JSON document (data portability). Secrets
are redacted: password and token hashes, TOTP secrets, passkey public keys are left out or
replaced by a marker, since a copy of them only helps an attacker."""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select

from forkyard.audit.models import AuditEvent
from forkyard.db.session import DbSession
from forkyard.identity.deps import UserPrincipal, require_session
from forkyard.identity.models import (
    ApiKey,
    AuthSession,
    BackupCode,
    MfaFactor,
    OAuthIdentity,
    SshKey,
    User,
)
from forkyard.identity.routing import protected_router
from forkyard.kit.clock import rfc3339, utcnow
from forkyard.kit.errors import NotFound
from forkyard.tenants.models import Membership, Org

router = protected_router("auth", prefix="/v1/auth", requires=require_session)

AUDIT_CAP = 5000
REDACTED = "[redacted]"


def _t(value: Any) -> str | None:
    return rfc3339(value) if value is not None else None


@router.post("/me/export", response_model=dict[str, Any])
async def export_me(session: DbSession, principal: UserPrincipal) -> dict[str, Any]:
    """Every record stored about the calling user as one JSON document, secrets redacted."""
    user = await session.get(User, principal.user_id)
    if user is None or user.deleted_at is not None:
        raise NotFound()

    async def rows(query: Any) -> list[Any]:
        return list((await session.execute(query)).scalars())

    memberships = await rows(select(Membership).where(Membership.user_id == user.id))
    org_ids = [m.org_id for m in memberships]
    orgs = {o.id: o for o in await rows(select(Org).where(Org.id.in_(org_ids)))} if org_ids else {}
    sessions = await rows(select(AuthSession).where(AuthSession.user_id == user.id))
    # The account holder's own keys, wherever made, and their personal org's: the export is
    # theirs across orgs, so this is not a tenant's lookup.
    keys = await rows(
        select(ApiKey).where(
            or_(ApiKey.created_by == user.id, ApiKey.org_id == user.personal_org_id)
        )
    )
    factors = await rows(
        select(MfaFactor).where(MfaFactor.user_id == user.id, MfaFactor.confirmed_at.is_not(None))
    )
    backup = await rows(select(BackupCode).where(BackupCode.user_id == user.id))
    identities = await rows(select(OAuthIdentity).where(OAuthIdentity.user_id == user.id))
    ssh = await rows(select(SshKey).where(SshKey.user_id == user.id))
    audit = await rows(
        select(AuditEvent)
        .where(or_(AuditEvent.actor_id == user.id, AuditEvent.target_id == user.id))
        .order_by(AuditEvent.created_at.desc())
        .limit(AUDIT_CAP)
    )
    return {
        "exported_at": rfc3339(utcnow()),
        "format": "forkyard.user-export.v1",
        "user": {
            "id": user.id,
            "email": user.email,
            "name": user.name,
            "email_verified_at": _t(user.email_verified_at),
            "phone": user.phone,
            "phone_verified_at": _t(user.phone_verified_at),
            "is_staff": user.is_staff,
            "personal_org_id": user.personal_org_id,
            "password": REDACTED if user.password_hash else None,
            "created_at": _t(user.created_at),
            "updated_at": _t(user.updated_at),
        },
        "memberships": [
            {
                "org_id": m.org_id,
                "org_name": orgs[m.org_id].name if m.org_id in orgs else None,
                "role": m.role,
                "joined_at": _t(m.created_at),
            }
            for m in memberships
        ],
        "sessions": [
            {
                "id": s.id,
                "ip": s.ip,
                "user_agent": s.user_agent,
                "created_at": _t(s.created_at),
                "last_seen_at": _t(s.last_seen_at),
                "revoked_at": _t(s.revoked_at),
                "revoked_reason": s.revoked_reason,
            }
            for s in sessions
        ],
        "api_keys": [
            {
                "id": k.id,
                "org_id": k.org_id,
                "name": k.name,
                "prefix": k.prefix,
                "scopes": list(k.scopes),
                "created_at": _t(k.created_at),
                "last_used_at": _t(k.last_used_at),
                "revoked_at": _t(k.revoked_at),
                "key": REDACTED,
            }
            for k in keys
        ],
        "mfa_factors": [
            {
                "id": f.id,
                "kind": f.kind,
                "name": f.name,
                "phone": f.phone,
                "secret": REDACTED if f.secret_enc else None,
                "created_at": _t(f.created_at),
                "last_used_at": _t(f.last_used_at),
            }
            for f in factors
        ],
        "backup_codes": {
            "total": len(backup),
            "unused": sum(1 for b in backup if b.used_at is None),
            "codes": REDACTED,
        },
        "oauth_identities": [
            {
                "provider": i.provider,
                "subject": i.subject,
                "email": i.email,
                "linked_at": _t(i.created_at),
                "last_login_at": _t(i.last_login_at),
            }
            for i in identities
        ],
        "ssh_keys": [
            {
                "id": k.id,
                "name": k.name,
                "key_type": k.key_type,
                "fingerprint": k.fingerprint,
                "public_key": k.public_key,
                "created_at": _t(k.created_at),
            }
            for k in ssh
        ],
        "audit_events": [
            {
                "id": e.id,
                "action": e.action,
                "org_id": e.org_id,
                "target_type": e.target_type,
                "target_id": e.target_id,
                "ip": e.ip,
                "user_agent": e.user_agent,
                "created_at": _t(e.created_at),
            }
            for e in audit
        ],
        "audit_events_truncated": len(audit) >= AUDIT_CAP,
    }
