"""Sign-in by emailed link: single use, minutes to live. An account with a second factor still
has to pass it; the link only replaces the password."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, EmailStr

from forkyard.audit.service import record_for_user
from forkyard.db.session import DbSession
from forkyard.identity import schemas
from forkyard.identity.deps import anonymous_limit, settings_of
from forkyard.identity.errors import InvalidToken
from forkyard.identity.mfa.challenges import challenge_or_sign_in
from forkyard.identity.models import User
from forkyard.identity.routing import public_router
from forkyard.identity.service import (
    claim_address,
    consume_token,
    find_user_by_email,
    issue_token,
)
from forkyard.kit.crypto import token_hash
from forkyard.kit.errors import RateLimited
from forkyard.kit.ratelimit import limiter
from forkyard.mail.sender import queue_email

public = public_router("auth", prefix="/v1/auth/login/magic-link")

PUBLIC = ["/v1/auth/login/magic-link/request", "/v1/auth/login/magic-link/consume"]
MESSAGE = "If an account uses that address, we sent it a sign-in link."


class MagicLinkRequest(BaseModel):
    email: EmailStr


@public.post(
    "/request", response_model=schemas.Message, dependencies=[anonymous_limit("magic-link", 5)]
)
async def request_magic_link(
    body: MagicLinkRequest, request: Request, session: DbSession
) -> schemas.Message:
    """Email a sign-in link; the answer is the same for every address."""
    settings = settings_of(request)
    try:
        # At most a few links an hour per address, whether or not it is registered.
        limiter.hit(f"magic-link:{token_hash(body.email.lower())}", 3)
    except RateLimited:
        return schemas.Message(message=MESSAGE)
    user = await find_user_by_email(session, body.email)
    if user is not None:
        token = await issue_token(session, user.id, "magic_link", settings.magic_link_ttl_s)
        minutes = settings.magic_link_ttl_s // 60
        await queue_email(
            session,
            user.email,
            "Your Forkyard sign-in link",
            f"Sign in within {minutes} minutes with this link (it works once):\n"
            f"{settings.public_url}/v1/auth/login/magic-link/consume?token={token}\n\n"
            "If you did not ask for it, ignore this message.\n",
        )
        await record_for_user(
            session,
            request,
            user,
            "auth.magic_link_requested",
            actor="stranger",
        )
    return schemas.Message(message=MESSAGE)


@public.get(
    "/consume", response_model=schemas.LoginResult, dependencies=[anonymous_limit("magic-link-use")]
)
async def consume_magic_link(
    request: Request,
    session: DbSession,
    token: Annotated[str, Query(min_length=10, max_length=200)],
) -> JSONResponse:
    """Use a sign-in link: sets the cookies, or answers with an MFA challenge."""
    row = await consume_token(session, token, "magic_link")
    user = await session.get(User, row.user_id)
    if user is None or user.deleted_at is not None:
        raise InvalidToken()
    # The link reached the mailbox: the address is proven, and an unverified account's earlier
    # credentials may be someone else's.
    await claim_address(session, user, reason="magic_link_claimed_address")
    return await challenge_or_sign_in(session, request, user, method="magic_link")
