"""Changing the account's phone and email. Email changes are sudo-gated, proven by a link to the
new address, never reveal whether that address is taken, and sign out every session."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, EmailStr, Field

from forkyard.audit.service import record
from forkyard.db.session import DbSession
from forkyard.identity import schemas
from forkyard.identity.cookies import clear_auth_cookies
from forkyard.identity.deps import SudoPrincipal, UserPrincipal, require_session, settings_of
from forkyard.identity.errors import InvalidToken
from forkyard.identity.mfa.codes import check_code, issue_code
from forkyard.identity.mfa.errors import InvalidCode
from forkyard.identity.models import User
from forkyard.identity.principal import Principal
from forkyard.identity.routing import protected_router
from forkyard.identity.service import (
    consume_token,
    find_user_by_email,
    issue_token,
    normalize_email,
    revoke_sessions,
    user_out,
)
from forkyard.identity.sms import is_e164, mask_phone, queue_sms
from forkyard.kit.clock import utcnow
from forkyard.kit.errors import Conflict, NotFound, ValidationFailed
from forkyard.kit.ratelimit import limiter
from forkyard.mail.sender import queue_email

router = protected_router("auth", prefix="/v1/auth", requires=require_session)

EMAIL_CHANGE_MESSAGE = (
    "If the address can be used, we sent it a confirmation link. The change happens when it is "
    "opened."
)


class PhoneChangeNeedsSudo(Conflict):
    code = "phone_change_requires_sudo"
    message = "This account has a verified phone; change it with POST /v1/auth/me/phone (sudo)."


class PhoneIn(BaseModel):
    phone: str = Field(min_length=8, max_length=16, description="E.164, e.g. +14155550100")


class PhoneCode(PhoneIn):
    code: str = Field(min_length=4, max_length=12)


class EmailChange(BaseModel):
    new_email: EmailStr


class EmailConfirm(BaseModel):
    token: str = Field(min_length=10, max_length=200)


class CodeSentTo(BaseModel):
    sent_to: str


async def _user(session: DbSession, principal: UserPrincipal) -> User:
    user = await session.get(User, principal.user_id)
    if user is None or user.deleted_at is not None:
        raise NotFound()
    return user


AccountUser = Annotated[User, Depends(_user)]


def _check_phone(phone: str) -> None:
    if not is_e164(phone):
        raise ValidationFailed(
            details={"fields": [{"loc": ["body", "phone"], "msg": "use E.164, like +14155550100"}]}
        )


async def _apply_phone(
    request: Request, session: DbSession, principal: Principal, user: User, body: PhoneCode
) -> schemas.User:
    _check_phone(body.phone)
    try:
        await check_code(
            session,
            settings_of(request),
            user_id=user.id,
            purpose="phone",
            code=body.code,
            target=body.phone,
        )
    except InvalidCode as exc:
        exc.keep_changes = True  # the spent attempt counts
        raise
    old = user.phone
    user.phone, user.phone_verified_at, user.updated_at = body.phone, utcnow(), utcnow()
    await record(
        session,
        "user.phone_changed",
        principal=principal,
        target_type="user",
        target_id=user.id,
        data={"had_phone": old is not None},
    )
    return user_out(user)


@router.post("/phone/send-code", response_model=CodeSentTo)
async def send_phone_code(
    body: PhoneIn, request: Request, session: DbSession, user: AccountUser
) -> CodeSentTo:
    """Text a 6-digit code to a phone number, to verify it."""
    _check_phone(body.phone)
    limiter.hit(f"phone-code:{user.id}", 5)
    code = await issue_code(
        session, settings_of(request), user_id=user.id, purpose="phone", target=body.phone
    )
    await queue_sms(session, body.phone, f"Your Forkyard verification code is {code}")
    return CodeSentTo(sent_to=mask_phone(body.phone) or "")


@router.post("/phone/verify", response_model=schemas.User)
async def verify_phone(
    body: PhoneCode,
    request: Request,
    session: DbSession,
    principal: UserPrincipal,
    user: AccountUser,
) -> schemas.User:
    """Verify and save a first phone number with the code just texted to it."""
    if user.phone_verified_at is not None and user.phone != body.phone:
        raise PhoneChangeNeedsSudo()
    return await _apply_phone(request, session, principal, user, body)


@router.post("/me/phone", response_model=schemas.User)
async def change_phone(
    body: PhoneCode,
    request: Request,
    session: DbSession,
    principal: SudoPrincipal,
    user: AccountUser,
) -> schemas.User:
    """Change the phone in one step (sudo): the new number and the code just texted to it."""
    return await _apply_phone(request, session, principal, user, body)


@router.post("/me/email", response_model=schemas.Message)
async def change_email(
    body: EmailChange,
    request: Request,
    session: DbSession,
    principal: SudoPrincipal,
    user: AccountUser,
) -> schemas.Message:
    """Ask to change the email (sudo); the same answer whether or not the address is taken."""
    settings = settings_of(request)
    new_email = normalize_email(body.new_email)
    limiter.hit(f"email-change:{user.id}", 5)
    taken = await find_user_by_email(session, new_email)
    if taken is None and new_email.lower() != user.email.lower():
        token = await issue_token(
            session, user.id, "email_change", settings.email_token_ttl_s, {"email": new_email}
        )
        await queue_email(
            session,
            new_email,
            "Confirm your new Forkyard email address",
            f"Confirm this address for your Forkyard account with this token:\n{token}\n"
            f"or at {settings.public_url}/confirm-email?token={token}\n",
        )
        await queue_email(
            session,
            user.email,
            "Your Forkyard email address is being changed",
            f"A change of your account's address to {new_email} was requested. If this was "
            "not you, change your password and remove unknown sessions now.\n",
        )
    await record(
        session,
        "user.email_change_requested",
        principal=principal,
        target_type="user",
        target_id=user.id,
    )
    return schemas.Message(message=EMAIL_CHANGE_MESSAGE)


@router.post("/me/email/confirm", response_model=schemas.Message)
async def confirm_email_change(
    body: EmailConfirm,
    request: Request,
    session: DbSession,
    principal: UserPrincipal,
    user: AccountUser,
) -> JSONResponse:
    """Confirm the new address with the emailed token; every session is signed out."""
    row = await consume_token(session, body.token, "email_change")
    new_email = str(row.data.get("email", ""))
    if row.user_id != user.id or not new_email or await find_user_by_email(session, new_email):
        raise InvalidToken()
    old = user.email
    now = utcnow()
    user.email, user.email_verified_at, user.updated_at = new_email, now, now
    await revoke_sessions(session, user.id, reason="email_changed")
    await record(
        session, "user.email_changed", principal=principal, target_type="user", target_id=user.id
    )
    await queue_email(
        session,
        old,
        "Your Forkyard email address was changed",
        f"Your account now uses {new_email}. If this was not you, contact support at once.\n",
    )
    response = JSONResponse(
        schemas.Message(message="Email changed. Sign in again with the new address.").model_dump()
    )
    clear_auth_cookies(response, settings_of(request))
    return response
