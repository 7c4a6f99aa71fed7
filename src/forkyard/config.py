"""One settings object for the whole platform, read from FORKYARD_* variables and an optional .env."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# A secret still at this value is refused outside development mode.
PLACEHOLDER_SECRET = "change-me-in-production"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FORKYARD_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # --- running ---
    env: Literal["development", "test", "production"] = "development"
    data_dir: Path = Path(".forkyard")
    public_url: str = "http://127.0.0.1:8000"
    log_level: str = "INFO"
    log_json: bool | None = None  # None: JSON when stdout is not a terminal

    # --- database ---
    database_url: str | None = None  # unset: the embedded PostgreSQL in <data_dir>/pg
    db_pool_size: int = 10

    # --- secrets ---
    secret_key: str = PLACEHOLDER_SECRET  # signs tokens, derives encryption keys

    # --- HTTP ---
    cors_origins: list[str] = Field(default_factory=list)
    csrf_trusted_origins: list[str] = Field(default_factory=list)
    cookie_secure: bool = True
    trust_proxy_headers: bool = False  # take the client IP from X-Forwarded-For

    # --- auth ---
    access_token_ttl_s: int = 15 * 60
    refresh_token_ttl_s: int = 30 * 24 * 3600
    sudo_ttl_s: int = 5 * 60
    email_token_ttl_s: int = 24 * 3600
    password_reset_ttl_s: int = 3600
    invitation_ttl_s: int = 7 * 24 * 3600
    password_min_length: int = 10

    # --- rate limits (requests per minute) ---
    rate_limit_anonymous_per_min: int = 30
    rate_limit_principal_per_min: int = 1200
    login_failures_before_delay: int = 3

    # --- email ---
    smtp_url: str | None = None  # smtp://user:pass@host:port or smtps://...
    mail_from: str = "Forkyard <no-reply@forkyard.local>"

    # --- compute quotas per org ---
    max_instances_per_org: int = 50
    max_vcpus_per_org: int = 64
    max_memory_mb_per_org: int = 65536

    # --- worker ---
    worker_heartbeat_stale_s: int = 30
    worker_concurrency: int = 4
    run_worker_in_api: bool = True

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Settings:
        if self.env == "production" and self.secret_key == PLACEHOLDER_SECRET:
            raise ValueError(
                "FORKYARD_SECRET_KEY is still the placeholder; set a real secret outside development"
            )
        return self

    @property
    def is_dev(self) -> bool:
        return self.env != "production"

    @property
    def outbox_dir(self) -> Path:
        return self.data_dir / "outbox"


@lru_cache
def get_settings() -> Settings:
    return Settings()
