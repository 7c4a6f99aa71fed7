"""Request and response shapes for sign-in, accounts and sessions."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, EmailStr, Field


class SignupRequest(BaseModel):
    email: EmailStr
    password: str = Field(min_length=1, max_length=256)
    name: str = Field(default="", max_length=200)


class LoginRequest(BaseModel):
    email: EmailStr
    password: str = Field(min_length=1, max_length=256)


class Message(BaseModel):
    message: str


class User(BaseModel):
    """The signed-in user's own account."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    email: str
    name: str
    email_verified: bool
    phone: str | None
    is_staff: bool
    personal_org_id: str | None
    has_password: bool
    created_at: datetime


class PublicUser(BaseModel):
    """What another member of a shared org may see."""

    id: str
    name: str
    email: str
    created_at: datetime


class UserUpdate(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)


class LoginResult(BaseModel):
    user: User | None
    session_id: str | None
    mfa_required: bool
    challenge_token: str | None = None
    factors: list[str] | None = None


class ChangePasswordRequest(BaseModel):
    current_password: str = Field(max_length=256)
    new_password: str = Field(max_length=256)


class ForgotPasswordRequest(BaseModel):
    email: EmailStr


class ResetPasswordRequest(BaseModel):
    token: str = Field(min_length=10, max_length=200)
    new_password: str = Field(max_length=256)


class SetPasswordRequest(BaseModel):
    new_password: str = Field(max_length=256)


class SudoRequest(BaseModel):
    password: str = Field(max_length=256)


class SudoGrantOut(BaseModel):
    expires_at: datetime


class VerifyEmailResult(BaseModel):
    verified: bool
    email: str
    password_kept: bool = Field(
        description="False when the link was opened away from the browser that signed up: "
        "the sign-up password no longer works; sign in by magic link or use forgot-password."
    )


class Session(BaseModel):
    id: str
    device: str | None
    ip: str | None
    user_agent: str | None
    created_at: datetime
    last_seen_at: datetime
    current: bool


class RevokedCount(BaseModel):
    revoked: int
