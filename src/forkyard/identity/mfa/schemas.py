"""Request and response shapes for factors and MFA sign-in."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

FactorKind = Literal["totp", "sms", "email", "webauthn"]


class Factor(BaseModel):
    id: str
    kind: FactorKind
    name: str
    hint: str | None  # a masked phone or address; never the full value
    created_at: datetime
    last_used_at: datetime | None


class FactorList(BaseModel):
    data: list[Factor]
    backup_codes_remaining: int


class TotpEnrollment(BaseModel):
    factor_id: str
    secret: str
    otpauth_uri: str
    qr_svg: str


class TotpFinish(BaseModel):
    code: str = Field(min_length=6, max_length=10)
    factor_id: str | None = Field(default=None, max_length=40)
    name: str = Field(default="Authenticator app", max_length=100)


class SmsEnroll(BaseModel):
    phone: str = Field(min_length=8, max_length=16, description="E.164, e.g. +14155550100")


class CodeIn(BaseModel):
    code: str = Field(min_length=4, max_length=12)


class EnrollmentStarted(BaseModel):
    factor_id: str
    sent_to: str
    expires_at: datetime


class WebauthnRegisterBegin(BaseModel):
    factor_id: str
    options: dict[str, Any]


class WebauthnRegisterFinish(BaseModel):
    factor_id: str = Field(max_length=40)
    credential: dict[str, Any]
    name: str = Field(default="Passkey", max_length=100)


class BackupCodes(BaseModel):
    codes: list[str]


class ChallengeFactor(BaseModel):
    id: str
    kind: str
    hint: str | None


class ChallengeState(BaseModel):
    factors: list[ChallengeFactor]
    kinds: list[str]
    expires_at: datetime
    attempts_left: int


class ChallengeIn(BaseModel):
    challenge_token: str = Field(min_length=10, max_length=200)


class SendCode(ChallengeIn):
    factor: Literal["sms", "email"]
    factor_id: str | None = Field(default=None, max_length=40)


class CodeSent(BaseModel):
    sent_to: str | None
    expires_at: datetime


class MfaVerify(ChallengeIn):
    code: str = Field(
        min_length=4, max_length=20, description="A TOTP, SMS or email code, or a backup code"
    )


class WebauthnLoginBegin(BaseModel):
    options: dict[str, Any]


class WebauthnLoginFinish(ChallengeIn):
    credential: dict[str, Any]
