"""Listing and removing second factors, and regenerating the backup codes (signed in)."""

from __future__ import annotations

from fastapi import Request, Response
from sqlalchemy import delete

from forkyard.audit.service import record
from forkyard.db.session import DbSession
from forkyard.events import emit
from forkyard.identity.deps import SudoPrincipal, settings_of
from forkyard.identity.events import UserBackupCodesRegenerated, UserMfaFactorRemoved
from forkyard.identity.mfa import backup_codes
from forkyard.identity.mfa import schemas as s
from forkyard.identity.mfa.challenges import confirmed_factors
from forkyard.identity.mfa.routes.common import MfaNotEnabled, SessionUser, factor_out
from forkyard.identity.mfa.routes.routers import router
from forkyard.identity.models import BackupCode, MfaFactor
from forkyard.kit.errors import NotFound
from forkyard.kit.ids import has_prefix


@router.get("/factors", response_model=s.FactorList)
async def list_factors(session: DbSession, user: SessionUser) -> s.FactorList:
    """The account's confirmed second factors and how many backup codes are left."""
    factors = await confirmed_factors(session, user.id)
    return s.FactorList(
        data=[factor_out(f, user) for f in factors],
        backup_codes_remaining=await backup_codes.remaining(session, user.id),
    )


@router.post("/factors/{id}/remove", status_code=204)
async def remove_factor(
    id: str, session: DbSession, principal: SudoPrincipal, user: SessionUser
) -> Response:
    """Remove a second factor (sudo). Removing the last one also drops the backup codes."""
    factor = await session.get(MfaFactor, id) if has_prefix(id, "mfa") else None
    if factor is None or factor.user_id != user.id:
        raise NotFound.of("Factor", id)
    await session.delete(factor)
    await session.flush()
    if not await confirmed_factors(session, user.id):
        await session.execute(delete(BackupCode).where(BackupCode.user_id == user.id))
    await record(
        session,
        "auth.mfa_factor_removed",
        principal=principal,
        target_type="mfa_factor",
        target_id=id,
        data={"kind": factor.kind},
    )
    # The owner is told by the security notice this event makes (notifications), email included.
    await emit(session, UserMfaFactorRemoved.of(user, factor))
    return Response(status_code=204)


@router.post("/backup-codes/regenerate", response_model=s.BackupCodes)
async def regenerate_backup_codes(
    request: Request, session: DbSession, principal: SudoPrincipal, user: SessionUser
) -> s.BackupCodes:
    """Replace the backup codes (sudo); the new ones are shown only in this answer."""
    if not await confirmed_factors(session, user.id):
        raise MfaNotEnabled()
    codes = await backup_codes.regenerate(session, settings_of(request), user.id)
    await record(
        session,
        "auth.backup_codes_regenerated",
        principal=principal,
        target_type="user",
        target_id=user.id,
    )
    await emit(session, UserBackupCodesRegenerated.of(user))
    return s.BackupCodes(codes=codes)
