"""Public profiles of users who share an org with the caller (tag users)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import aliased

from forkyard.db.session import DbSession
from forkyard.db.tenancy import owned
from forkyard.identity import schemas
from forkyard.identity.deps import CurrentPrincipal
from forkyard.identity.models import User
from forkyard.identity.routing import protected_router
from forkyard.kit.errors import NotFound
from forkyard.kit.ids import has_prefix
from forkyard.tenants.models import Membership

router = protected_router("users", prefix="/v1/users")


@router.get("/{id}", response_model=schemas.PublicUser)
async def get_user(id: str, session: DbSession, principal: CurrentPrincipal) -> schemas.PublicUser:
    """A user's public profile, visible only to people who share an org with them."""
    if not has_prefix(id, "usr"):
        raise NotFound.of("User", id)
    theirs, mine = aliased(Membership), aliased(Membership)
    if principal.kind == "api_key":
        # A key is bound to its org: it sees that org's members, not everyone its creator knows.
        visible = (
            principal.org_id is not None
            and (
                await session.execute(
                    owned(select(theirs.id).where(theirs.user_id == id), principal, theirs).limit(1)
                )
            ).first()
            is not None
        )
    elif principal.user_id == id:
        visible = True
    elif principal.user_id:
        visible = (
            await session.execute(
                select(theirs.id)
                # Not a tenancy filter: any org the two users share, across all their orgs.
                .join(mine, mine.org_id == theirs.org_id)
                .where(theirs.user_id == id, mine.user_id == principal.user_id)
                .limit(1)
            )
        ).first() is not None
    else:
        visible = False
    user = await session.get(User, id) if visible else None
    if user is None or user.deleted_at is not None:
        raise NotFound.of("User", id)
    return schemas.PublicUser(
        id=user.id, name=user.name, email=user.email, created_at=user.created_at
    )
