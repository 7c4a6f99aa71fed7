"""Identity tables. Secrets are stored only as hashes (tokens, keys) or argon2id (passwords)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from forkyard.db.base import Base, IdMixin, SingleUseMixin


class User(IdMixin, Base):
    __tablename__ = "users"
    id_prefix = "usr"

    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str | None] = mapped_column(String(200))
    email_verified_at: Mapped[datetime | None]
    phone: Mapped[str | None] = mapped_column(String(32))
    phone_verified_at: Mapped[datetime | None]
    is_staff: Mapped[bool] = mapped_column(Boolean, default=False)
    personal_org_id: Mapped[str | None] = mapped_column(String(40))
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    last_failed_login_at: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]
    updated_at: Mapped[datetime | None]

    __table_args__ = (
        # One live account per address; a deleted account's address is scrubbed, freeing it.
        Index("uq_users_email_live", "email", unique=True, postgresql_where="deleted_at IS NULL"),
    )


class AuthSession(IdMixin, Base):
    """A signed-in device. The access and refresh cookies are random tokens stored as hashes."""

    __tablename__ = "auth_sessions"
    id_prefix = "ses"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    access_hash: Mapped[str] = mapped_column(String(64), unique=True)
    access_expires_at: Mapped[datetime]
    refresh_hash: Mapped[str] = mapped_column(String(64), unique=True)
    refresh_expires_at: Mapped[datetime]
    # Hashes of refresh tokens this session already rotated away; presenting one means theft.
    previous_refresh_hashes: Mapped[list[str]] = mapped_column(ARRAY(String(64)), default=list)
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(400))
    last_seen_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(String(64))
    mfa_verified: Mapped[bool] = mapped_column(Boolean, default=False)


class SudoGrant(IdMixin, Base):
    __tablename__ = "sudo_grants"
    id_prefix = "sudo"

    session_id: Mapped[str] = mapped_column(
        ForeignKey("auth_sessions.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime]


class OneTimeToken(IdMixin, SingleUseMixin, Base):
    """Emailed links and codes: email verification, password reset, magic link, email change,
    recovery, invitations' acceptance is separate. Single use: `used_at` is set on consumption."""

    __tablename__ = "one_time_tokens"
    id_prefix = "ott"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(40))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)


class ApiKey(IdMixin, Base):
    __tablename__ = "api_keys"
    id_prefix = "key"

    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"), index=True)
    created_by: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16))  # first characters, shown to tell keys apart
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(64)))
    expires_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    last_used_ip: Mapped[str | None] = mapped_column(String(64))
    revoked_at: Mapped[datetime | None]
    is_internal: Mapped[bool] = mapped_column(Boolean, default=False)


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_records"

    principal: Mapped[str] = mapped_column(String(80), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    method_path: Mapped[str] = mapped_column(String(400))
    body_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response_body: Mapped[str] = mapped_column(Text)
    content_type: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(index=True)  # expiry sweeps (prune_records)


class MfaFactor(IdMixin, Base):
    """A second factor: totp, sms, email or webauthn. Unconfirmed rows are enrollments in
    progress. The TOTP secret is encrypted at rest; a passkey keeps only its public key."""

    __tablename__ = "mfa_factors"
    id_prefix = "mfa"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(100), default="")
    secret_enc: Mapped[str | None] = mapped_column(Text)  # TOTP secret, encrypted
    phone: Mapped[str | None] = mapped_column(String(32))  # sms factors
    # The last TOTP time step accepted: a code for this step or an earlier one is a replay.
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    credential_id: Mapped[str | None] = mapped_column(String(1400), unique=True)  # base64url
    public_key: Mapped[str | None] = mapped_column(Text)  # COSE key, base64url
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)
    pending_challenge: Mapped[str | None] = mapped_column(String(200))  # registration ceremony
    confirmed_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]


class MfaCode(IdMixin, SingleUseMixin, Base):
    """A short numeric code sent by SMS or email: hashed, single use, attempt-limited, short-lived.
    `purpose` says what it proves (factor enrollment, a login challenge, a phone number)."""

    __tablename__ = "mfa_codes"
    id_prefix = "mfc"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(40))
    factor_id: Mapped[str | None] = mapped_column(
        ForeignKey("mfa_factors.id", ondelete="CASCADE"), index=True
    )
    challenge_id: Mapped[str | None] = mapped_column(
        ForeignKey("login_challenges.id", ondelete="CASCADE"), index=True
    )
    target: Mapped[str | None] = mapped_column(String(320))  # the phone or address it went to
    code_hash: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)


class BackupCode(IdMixin, Base):
    __tablename__ = "mfa_backup_codes"
    id_prefix = "bkc"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime | None]


class LoginChallenge(IdMixin, SingleUseMixin, Base):
    """A password (or link, or OAuth) sign-in waiting for its second factor. Only the hash of
    the challenge token is stored; it expires and allows a few attempts."""

    __tablename__ = "login_challenges"
    id_prefix = "lch"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    method: Mapped[str] = mapped_column(String(20))  # password, magic_link, oauth
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    codes_sent: Mapped[int] = mapped_column(Integer, default=0)
    webauthn_challenge: Mapped[str | None] = mapped_column(String(200))
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(400))


class OAuthIdentity(IdMixin, Base):
    """An account at an OAuth/OIDC provider linked to a user."""

    __tablename__ = "oauth_identities"
    id_prefix = "oid"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(40))
    subject: Mapped[str] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(320))
    last_login_at: Mapped[datetime | None]

    __table_args__ = (UniqueConstraint("provider", "subject"),)


class OAuthState(IdMixin, SingleUseMixin, Base):
    """One authorization request in flight: the state (hashed), the PKCE verifier and the OIDC
    nonce (encrypted), single use."""

    __tablename__ = "oauth_states"
    id_prefix = "ost"

    state_hash: Mapped[str] = mapped_column(String(64), unique=True)
    provider: Mapped[str] = mapped_column(String(40))
    secrets_enc: Mapped[str] = mapped_column(Text)


class SshKey(IdMixin, Base):
    __tablename__ = "ssh_keys"
    id_prefix = "sshk"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    key_type: Mapped[str] = mapped_column(String(40))
    public_key: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    last_used_at: Mapped[datetime | None]

    __table_args__ = (UniqueConstraint("user_id", "fingerprint"),)
