"""One settings object for the whole platform, read from FORKYARD_* variables and an optional .env."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from forkyard.node.egress import DEFAULT_BLOCKED, valid_ranges

# A secret still at this value is refused outside development mode.
PLACEHOLDER_SECRET = "change-me-in-production"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FORKYARD_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # --- running ---
    # production refuses placeholder secrets
    env: Literal["development", "test", "production"] = "development"
    data_dir: Path = Path(".forkyard")  # state: embedded PostgreSQL, outbox, node data
    public_url: str = "http://127.0.0.1:8000"  # the URL users reach; used in emailed links and CSRF
    log_level: str = "INFO"  # DEBUG, INFO, WARNING, ERROR
    log_json: bool | None = None  # None: JSON when stdout is not a terminal

    # --- database ---
    database_url: str | None = None  # unset: the embedded PostgreSQL in <data_dir>/pg
    db_pool_size: int = 10  # connections per process (as many again may overflow)

    # --- secrets ---
    # signs tokens, derives encryption keys; unset: generated on first start (<data_dir>/secret-key, 0600)
    secret_key: str = ""

    # --- HTTP ---
    # browser origins allowed by CORS (a JSON list)
    cors_origins: list[str] = Field(default_factory=list)
    # extra origins allowed for cookie-authenticated writes (a JSON list)
    csrf_trusted_origins: list[str] = Field(default_factory=list)
    # None: Secure cookies unless a development server is reached over plain http.
    cookie_secure: bool | None = None
    # CIDRs of our reverse proxies (a JSON list): X-Forwarded-For is believed only from them,
    # and the client is the rightmost hop that is not one of them. Empty: the peer address.
    trusted_proxies: list[str] = Field(default_factory=list)

    # --- auth ---
    access_token_ttl_s: int = 15 * 60
    refresh_token_ttl_s: int = 30 * 24 * 3600
    sudo_ttl_s: int = 5 * 60
    email_token_ttl_s: int = 24 * 3600
    password_reset_ttl_s: int = 3600
    invitation_ttl_s: int = 7 * 24 * 3600
    password_min_length: int = 10

    # --- MFA, passkeys, magic links, recovery ---
    webauthn_rp_id: str = "localhost"  # the registrable domain passkeys are bound to
    webauthn_rp_name: str = "Forkyard"
    webauthn_origin: str = "http://localhost:8000"  # the browser origin ceremonies run on
    mfa_challenge_ttl_s: int = 10 * 60
    mfa_challenge_max_attempts: int = 5
    # failed second-factor attempts per account, across all its challenges, within the window
    mfa_user_max_failures: int = 10
    mfa_user_failure_window_s: int = 15 * 60
    mfa_code_ttl_s: int = 10 * 60
    mfa_code_max_attempts: int = 5
    magic_link_ttl_s: int = 15 * 60
    recovery_cooldown_s: int = 24 * 3600
    recovery_window_s: int = 72 * 3600  # how long a recovery token lives, cooldown included

    # --- OAuth / OpenID Connect sign-in (a provider is offered when its client id is set) ---
    oauth_github_client_id: str | None = None
    oauth_github_client_secret: str | None = None
    oauth_github_base_url: str = "https://github.com"
    oauth_github_api_url: str = "https://api.github.com"
    oauth_google_client_id: str | None = None
    oauth_google_client_secret: str | None = None
    oauth_google_issuer: str = "https://accounts.google.com"
    oauth_oidc_client_id: str | None = None
    oauth_oidc_client_secret: str | None = None
    oauth_oidc_issuer: str | None = None  # discovery at <issuer>/.well-known/openid-configuration
    oauth_oidc_name: str = "Single sign-on"

    # --- SMS (Twilio when the account sid is set; otherwise <data_dir>/outbox/sms-*.txt) ---
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_from_number: str | None = None
    twilio_api_base_url: str | None = None  # override https://api.twilio.com (tests, proxies)

    # --- rate limits (requests per minute) ---
    rate_limit_anonymous_per_min: int = 30
    rate_limit_principal_per_min: int = 1200
    login_failures_before_delay: int = 3  # failed sign-ins per account before the slowdown starts

    # --- email ---
    smtp_url: str | None = None  # smtp://user:pass@host:port or smtps://...
    mail_from: str = "Forkyard <no-reply@forkyard.local>"  # the From header of every email

    # --- compute quotas per org ---
    max_instances_per_org: int = 50
    max_vcpus_per_org: int = 64
    max_memory_mb_per_org: int = 65536
    # instances' disks plus the org's checkpoints, snapshots and image layers, in MiB
    max_disk_mb_per_org: int = 200 * 1024
    max_disk_mb_per_instance: int = 64 * 1024  # the largest disk one instance may ask for

    # --- compute ---
    # nodes present it to join; unset: generated on first start (<data_dir>/node-token, 0600)
    node_token: str = ""
    local_node: bool = True  # `serve` also runs one compute node on this machine
    image_cache_dir: Path | None = None  # where built images are cached (default <data_dir>/images)
    server_stale_after_s: int = 30  # a node silent this long is marked unreachable
    exec_max_output_bytes: int = 1024 * 1024
    exec_default_timeout_s: float = 300.0
    file_read_max_bytes: int = 64 * 1024 * 1024  # a larger file is read in ranges (offset, limit)
    # egress of instances created without a `network` (none, allowlist, open); ADR 0015
    default_egress: Literal["none", "allowlist", "open"] = "none"
    # IPv4 CIDRs no instance ever reaches, whatever its policy (a JSON list); the node adds
    # loopback, link-local and its instances' links. Default: every non-public range.
    egress_blocked_ranges: list[str] = Field(default_factory=lambda: list(DEFAULT_BLOCKED))

    # --- preview URLs and port forwards ---
    # wildcard domain pointed at Forkyard (`{port}-{instance}.<domain>`); unset: localhost:<API port>
    preview_domain: str | None = None
    preview_share_ttl_s: int = 900  # share links of private forwards (and the cookie they set)

    # --- SSH gateway (docs/adr/0014-ssh-gateway.md) ---
    ssh_enabled: bool = True  # `serve` runs the SSH gateway
    ssh_port: int = 2222  # the gateway's port (0: any free port)
    # the interface the gateway listens on: loopback, like `serve --host`, until an operator
    # opens it (a second installation on the host also needs another ssh_port)
    ssh_listen_host: str = "127.0.0.1"
    ssh_public_host: str | None = None  # the host name users ssh to; unset: public_url's host
    ssh_auth_attempts_per_min: int = 30  # failed sign-ins (and connections) per client address

    # --- request bodies (checked before any body is read: 413 payload_too_large) ---
    max_json_body_bytes: int = 10 * 1024 * 1024
    max_upload_body_bytes: int = 64 * 1024 * 1024  # file writes (POST /v1/instances/{id}/files)

    # --- webhooks (docs/adr/0016-webhooks.md) ---
    # deliver to loopback, private, link-local and metadata addresses (tests, a lab; never public)
    webhooks_allow_private: bool = False
    webhooks_timeout_s: float = 10.0  # one delivery attempt, connect to last byte
    # an endpoint whose every attempt has failed for this long is disabled and its owners told
    webhooks_disable_after_s: int = 5 * 24 * 3600
    webhooks_max_per_org: int = 20
    webhooks_test_per_min: int = 10  # POST /v1/webhooks/{id}/test per org

    # --- events API and streams (docs/adr/0016-webhooks.md) ---
    events_retention_days: int = 90  # events older than this are deleted (the API, the streams)
    events_stream_keepalive_s: float = 15.0  # SSE keep-alive comment after this much silence

    # --- worker ---
    worker_heartbeat_stale_s: int = 30
    job_retention_s: int = 7 * 24 * 3600  # finished jobs are deleted this long after they end
    worker_concurrency: int = 4
    run_worker_in_api: bool = True

    @field_validator("egress_blocked_ranges")
    @classmethod
    def _blocked_are_ipv4_networks(cls, value: list[str]) -> list[str]:
        if not valid_ranges(value):
            raise ValueError("egress_blocked_ranges holds IPv4 addresses and CIDRs only")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_networks(cls, value: list[str]) -> list[str]:
        for cidr in value:
            ipaddress.ip_network(cidr, strict=False)  # a typo fails the start, loudly
        return value

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Settings:
        if self.cookie_secure is None:
            self.cookie_secure = self.env == "production" or self.public_url.startswith("https://")
        if self.env != "development":
            for name in ("secret_key", "node_token"):
                if getattr(self, name) == PLACEHOLDER_SECRET:
                    raise ValueError(
                        f"FORKYARD_{name.upper()} is still the placeholder; set a real secret outside development"
                    )
        return self

    @property
    def is_dev(self) -> bool:
        return self.env != "production"

    @property
    def outbox_dir(self) -> Path:
        return self.data_dir / "outbox"


GENERATED_SECRETS = {"secret_key": "secret-key", "node_token": "node-token"}


def ensure_secrets(settings: Settings) -> Settings:
    """Fill secrets left unset from files in the data dir, made on first start (random, mode
    0600): an installation never runs on a value anyone can read in our source."""
    import os
    import secrets

    for name, file_name in GENERATED_SECRETS.items():
        if getattr(settings, name):
            continue
        path = settings.data_dir / file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # made on an earlier start (or by a sibling process just now)
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(48))
        value = path.read_text().strip()
        if not value:
            raise RuntimeError(f"{path} is empty; delete it to have a new secret made")
        setattr(settings, name, value)
    return settings


@lru_cache
def get_settings() -> Settings:
    return Settings()
