"""Generated from docs/openapi.snapshot.json by `make docs` (forkyard.reference.pysdk).
Do not edit: a test fails when this file differs from what the snapshot generates."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, Literal, NotRequired, TypedDict, cast

if TYPE_CHECKING:
    from forkyard_sdk._transport import AsyncCore, Event, SyncCore

SNAPSHOT_VERSION = "0.1.0"

# operation id -> (method, path template)
OPERATIONS: dict[str, tuple[str, str]] = {
    "account_ssh_keys-list_ssh_keys": ("GET", "/v1/account/ssh-keys"),
    "account_ssh_keys-add_ssh_key": ("POST", "/v1/account/ssh-keys"),
    "account_ssh_keys-delete_ssh_key": ("DELETE", "/v1/account/ssh-keys/{id}"),
    "api_keys-list_api_keys": ("GET", "/v1/api-keys"),
    "api_keys-create_api_key": ("POST", "/v1/api-keys"),
    "api_keys-get_api_key": ("GET", "/v1/api-keys/{id}"),
    "api_keys-revoke_api_key": ("DELETE", "/v1/api-keys/{id}"),
    "api_keys-rotate_api_key": ("POST", "/v1/api-keys/{id}/rotate"),
    "audit-list_audit_events": ("GET", "/v1/audit"),
    "auth-forgot_password": ("POST", "/v1/auth/forgot-password"),
    "auth-login": ("POST", "/v1/auth/login"),
    "auth-consume_magic_link": ("GET", "/v1/auth/login/magic-link/consume"),
    "auth-request_magic_link": ("POST", "/v1/auth/login/magic-link/request"),
    "auth-verify_login": ("POST", "/v1/auth/login/mfa"),
    "auth-send_login_code": ("POST", "/v1/auth/login/mfa/send-code"),
    "auth-challenge_state": ("GET", "/v1/auth/login/mfa/state"),
    "auth-webauthn_login_begin": ("POST", "/v1/auth/login/mfa/webauthn/begin"),
    "auth-webauthn_login_finish": ("POST", "/v1/auth/login/mfa/webauthn/finish"),
    "auth-logout": ("POST", "/v1/auth/logout"),
    "auth-get_me": ("GET", "/v1/auth/me"),
    "auth-update_me": ("PATCH", "/v1/auth/me"),
    "auth-delete_me": ("DELETE", "/v1/auth/me"),
    "auth-change_email": ("POST", "/v1/auth/me/email"),
    "auth-confirm_email_change": ("POST", "/v1/auth/me/email/confirm"),
    "auth-export_me": ("POST", "/v1/auth/me/export"),
    "auth-change_password": ("POST", "/v1/auth/me/password"),
    "auth-change_phone": ("POST", "/v1/auth/me/phone"),
    "auth-regenerate_backup_codes": ("POST", "/v1/auth/mfa/backup-codes/regenerate"),
    "auth-email_enroll": ("POST", "/v1/auth/mfa/email/enroll"),
    "auth-email_verify": ("POST", "/v1/auth/mfa/email/verify"),
    "auth-list_factors": ("GET", "/v1/auth/mfa/factors"),
    "auth-remove_factor": ("POST", "/v1/auth/mfa/factors/{id}/remove"),
    "auth-sms_enroll": ("POST", "/v1/auth/mfa/sms/enroll"),
    "auth-sms_verify": ("POST", "/v1/auth/mfa/sms/verify"),
    "auth-totp_enroll_begin": ("POST", "/v1/auth/mfa/totp/enroll/begin"),
    "auth-totp_enroll_finish": ("POST", "/v1/auth/mfa/totp/enroll/finish"),
    "auth-webauthn_register_begin": ("POST", "/v1/auth/mfa/webauthn/register/begin"),
    "auth-webauthn_register_finish": ("POST", "/v1/auth/mfa/webauthn/register/finish"),
    "auth-list_providers": ("GET", "/v1/auth/oauth/providers"),
    "auth-start_oauth": ("GET", "/v1/auth/oauth/{provider}"),
    "auth-oauth_callback": ("GET", "/v1/auth/oauth/{provider}/callback"),
    "auth-send_phone_code": ("POST", "/v1/auth/phone/send-code"),
    "auth-verify_phone": ("POST", "/v1/auth/phone/verify"),
    "auth-complete_recovery": ("POST", "/v1/auth/recovery/complete"),
    "auth-request_recovery": ("POST", "/v1/auth/recovery/request"),
    "auth-refresh": ("POST", "/v1/auth/refresh"),
    "auth-reset_password": ("POST", "/v1/auth/reset-password"),
    "auth-set_password": ("POST", "/v1/auth/set-password"),
    "auth-signup": ("POST", "/v1/auth/signup"),
    "auth-sudo": ("POST", "/v1/auth/sudo"),
    "auth-verify_email": ("GET", "/v1/auth/verify-email"),
    "base_images-list_base_images": ("GET", "/v1/base-images"),
    "base_images-get_default_image": ("GET", "/v1/base-images/default"),
    "base_images-get_family_current": ("GET", "/v1/base-images/family/{family}"),
    "base_images-rollback_family": ("POST", "/v1/base-images/family/{family}/rollback"),
    "base_images-list_family_versions": ("GET", "/v1/base-images/family/{family}/versions"),
    "base_images-get_base_image": ("GET", "/v1/base-images/{id}"),
    "base_images-delete_base_image": ("DELETE", "/v1/base-images/{id}"),
    "base_images-abort_image": ("POST", "/v1/images/abort"),
    "base_images-prepare_image": ("POST", "/v1/images/prepare"),
    "base_images-promote_image": ("POST", "/v1/images/promote"),
    "checkpoints-list_checkpoints": ("GET", "/v1/instances/{id}/checkpoints"),
    "checkpoints-create_checkpoint": ("POST", "/v1/instances/{id}/checkpoints"),
    "checkpoints-rollback": ("POST", "/v1/instances/{id}/rollback"),
    "checkpoints-get_checkpoint_route": (
        "GET",
        "/v1/instances/{instance_id}/checkpoints/{checkpoint_id}",
    ),
    "checkpoints-delete_checkpoint": (
        "DELETE",
        "/v1/instances/{instance_id}/checkpoints/{checkpoint_id}",
    ),
    "compute_servers-list_servers": ("GET", "/v1/admin/servers"),
    "compute_servers-get_server": ("GET", "/v1/admin/servers/{id}"),
    "compute_servers-drain_server": ("POST", "/v1/admin/servers/{id}/drain"),
    "compute_servers-server_metrics": ("GET", "/v1/admin/servers/{id}/metrics"),
    "compute_servers-set_server_status": ("PATCH", "/v1/admin/servers/{id}/status"),
    "compute_servers-server_vm_storage": ("GET", "/v1/admin/servers/{id}/vm-storage"),
    "events-list_events": ("GET", "/v1/events"),
    "events-stream_events": ("GET", "/v1/events/stream"),
    "events-get_event": ("GET", "/v1/events/{id}"),
    "exec-list_execs": ("GET", "/v1/instances/{id}/exec"),
    "exec-run_command": ("POST", "/v1/instances/{id}/exec"),
    "exec-stream_command": ("POST", "/v1/instances/{id}/exec/stream"),
    "files-read_file": ("GET", "/v1/instances/{id}/files"),
    "files-write_file": ("POST", "/v1/instances/{id}/files"),
    "files-edit_file": ("POST", "/v1/instances/{id}/files/edit"),
    "files-list_files": ("GET", "/v1/instances/{id}/files/list"),
    "files-watch_files": ("GET", "/v1/instances/{id}/files/watch"),
    "health-health": ("GET", "/health"),
    "health-health_live": ("GET", "/health/live"),
    "health-health_ready": ("GET", "/health/ready"),
    "health-health_startup": ("GET", "/health/startup"),
    "instances-list_instances": ("GET", "/v1/instances"),
    "instances-create_instance_route": ("POST", "/v1/instances"),
    "instances-get_instance_route": ("GET", "/v1/instances/{id}"),
    "instances-update_instance": ("PATCH", "/v1/instances/{id}"),
    "instances-delete_instance": ("DELETE", "/v1/instances/{id}"),
    "instances-fork_instance": ("POST", "/v1/instances/{id}/fork"),
    "internal-register_server": ("POST", "/v1/internal/servers/register"),
    "internal-server_heartbeat": ("POST", "/v1/internal/servers/{id}/heartbeat"),
    "invitations-get_invitation": ("GET", "/v1/auth/invitations/{token}"),
    "invitations-accept_invitation": ("POST", "/v1/auth/invitations/{token}/accept"),
    "invitations-list_invitations": ("GET", "/v1/orgs/{org_id}/invitations"),
    "invitations-create_invitation": ("POST", "/v1/orgs/{org_id}/invitations"),
    "invitations-revoke_invitation": ("DELETE", "/v1/orgs/{org_id}/invitations/{inv_id}"),
    "lsp-list_language_servers": ("GET", "/v1/instances/{id}/lsp"),
    "members-list_members": ("GET", "/v1/orgs/{org_id}/members"),
    "members-update_member": ("PATCH", "/v1/orgs/{org_id}/members/{user_id}"),
    "members-remove_member": ("DELETE", "/v1/orgs/{org_id}/members/{user_id}"),
    "notifications-list_notifications": ("GET", "/v1/notifications"),
    "notifications-read_all_notifications": ("POST", "/v1/notifications/read-all"),
    "notifications-get_notification_settings": ("GET", "/v1/notifications/settings"),
    "notifications-update_notification_settings": ("PUT", "/v1/notifications/settings"),
    "notifications-stream_notifications": ("GET", "/v1/notifications/stream"),
    "notifications-read_notification": ("POST", "/v1/notifications/{id}/read"),
    "orgs-list_orgs": ("GET", "/v1/orgs"),
    "orgs-create_org": ("POST", "/v1/orgs"),
    "orgs-list_ip_allowlist": ("GET", "/v1/orgs/me/ip-allowlist"),
    "orgs-add_ip_allowlist_entry": ("POST", "/v1/orgs/me/ip-allowlist"),
    "orgs-remove_ip_allowlist_entry": ("DELETE", "/v1/orgs/me/ip-allowlist/{entry_id}"),
    "orgs-get_org": ("GET", "/v1/orgs/{id}"),
    "orgs-update_org": ("PATCH", "/v1/orgs/{id}"),
    "orgs-list_org_members": ("GET", "/v1/orgs/{id}/members"),
    "port_forwards-list_port_forwards": ("GET", "/v1/instances/{id}/port-forwards"),
    "port_forwards-create_port_forward": ("POST", "/v1/instances/{id}/port-forwards"),
    "port_forwards-delete_port_forward": (
        "DELETE",
        "/v1/instances/{instance_id}/port-forwards/{forward_id}",
    ),
    "port_forwards-share_port_forward": (
        "POST",
        "/v1/instances/{instance_id}/port-forwards/{forward_id}/share",
    ),
    "profiles-list_profiles": ("GET", "/v1/profiles"),
    "profiles-create_profile": ("POST", "/v1/profiles"),
    "profiles-get_profile_route": ("GET", "/v1/profiles/{id}"),
    "profiles-update_profile": ("PATCH", "/v1/profiles/{id}"),
    "profiles-delete_profile": ("DELETE", "/v1/profiles/{id}"),
    "sessions-list_sessions": ("GET", "/v1/auth/me/sessions"),
    "sessions-revoke_other_sessions": ("POST", "/v1/auth/me/sessions/revoke-others"),
    "sessions-revoke_session": ("DELETE", "/v1/auth/me/sessions/{id}"),
    "snapshots-list_snapshots": ("GET", "/v1/instances/{id}/snapshots"),
    "snapshots-create_snapshot": ("POST", "/v1/instances/{id}/snapshots"),
    "snapshots-get_snapshot": ("GET", "/v1/instances/{id}/snapshots/{snapshot_id}"),
    "snapshots-delete_snapshot": ("DELETE", "/v1/instances/{id}/snapshots/{snapshot_id}"),
    "snapshots-restore_snapshot": ("POST", "/v1/instances/{id}/snapshots/{snapshot_id}/restore"),
    "ssh-ssh_access": ("GET", "/v1/instances/{id}/ssh"),
    "users-get_user": ("GET", "/v1/users/{id}"),
    "vms-get_vm_route": ("GET", "/v1/instances/{id}/vm"),
    "vms-start_vm": ("POST", "/v1/instances/{id}/vm"),
    "vms-stop_vm": ("DELETE", "/v1/instances/{id}/vm"),
    "vms-flush_vm": ("POST", "/v1/instances/{id}/vm/flush"),
    "vms-restart_vm": ("POST", "/v1/instances/{id}/vm/restart"),
    "webhooks-list_webhook_dead_letters": ("GET", "/v1/admin/webhooks/dlq"),
    "webhooks-reap_webhook_dead_letters": ("POST", "/v1/admin/webhooks/dlq/reap"),
    "webhooks-retry_webhook_dead_letter": ("POST", "/v1/admin/webhooks/dlq/{id}/retry"),
    "webhooks-process_webhook_queue": ("POST", "/v1/admin/webhooks/process-queue"),
    "webhooks-list_webhooks": ("GET", "/v1/webhooks"),
    "webhooks-create_webhook": ("POST", "/v1/webhooks"),
    "webhooks-get_webhook": ("GET", "/v1/webhooks/{id}"),
    "webhooks-update_webhook": ("PATCH", "/v1/webhooks/{id}"),
    "webhooks-delete_webhook": ("DELETE", "/v1/webhooks/{id}"),
    "webhooks-list_webhook_deliveries": ("GET", "/v1/webhooks/{id}/deliveries"),
    "webhooks-test_webhook": ("POST", "/v1/webhooks/{id}/test"),
}

# error code -> HTTP status (from the server's error classes)
ERROR_CODES: dict[str, int] = {
    "agent_unavailable": 503,
    "allowlist_entry_exists": 409,
    "allowlist_full": 409,
    "already_member": 409,
    "bad_request": 400,
    "capture_failed": 500,
    "conflict": 409,
    "cookie_session_required": 403,
    "delivery_not_dead_lettered": 409,
    "edit_no_match": 409,
    "edit_not_unique": 409,
    "email_not_verified": 403,
    "factor_unavailable": 400,
    "file_too_large": 400,
    "forbidden": 403,
    "gone": 410,
    "idempotency_conflict": 409,
    "image_in_use": 409,
    "image_not_ready": 409,
    "instance_not_found": 404,
    "instance_not_running": 409,
    "invalid_code": 400,
    "invalid_credentials": 401,
    "invalid_token": 400,
    "invalid_transition": 409,
    "invitation_email_mismatch": 403,
    "invitation_expired": 410,
    "invitation_revoked": 410,
    "invitation_used": 409,
    "last_owner": 409,
    "malformed_json": 400,
    "mfa_challenge_invalid": 401,
    "no_capacity": 503,
    "no_pending_enrollment": 404,
    "no_previous_version": 409,
    "node_error": 500,
    "not_found": 404,
    "owner_required": 403,
    "password_already_set": 409,
    "payload_too_large": 413,
    "personal_org": 409,
    "port_forward_exists": 409,
    "port_forward_not_http": 409,
    "port_refused": 502,
    "port_unreachable": 502,
    "profile_name_taken": 409,
    "quota_exceeded": 403,
    "rate_limited": 429,
    "sandbox_failed": 500,
    "server_unreachable": 503,
    "service_unavailable": 503,
    "session_revoked": 401,
    "snapshot_in_use": 409,
    "sudo_required": 403,
    "too_many_codes": 409,
    "unauthenticated": 401,
    "validation_failed": 422,
    "webauthn_failed": 400,
    "webhook_disabled": 409,
    "webhook_limit_reached": 403,
    "webhook_url_refused": 422,
    "would_lock_out": 409,
}


class Actor(TypedDict):
    id: NotRequired[str | None]
    type: NotRequired[str]


class AllowlistEntry(TypedDict):
    cidr: str
    created_at: str
    created_by: str | None
    description: str
    id: str


class AllowlistEntryCreate(TypedDict):
    cidr: str
    confirm_lockout: NotRequired[bool]
    description: NotRequired[str]


class ApiKeyCreate(TypedDict):
    expires_at: NotRequired[str | None]
    name: str
    scopes: NotRequired[list[str] | None]


class ApiKeyCreatedData(TypedDict):
    actor: Actor
    created_at: str
    id: str
    org_id: str | None
    payload: ApiKeyCreatedPayload
    resource_id: str
    resource_type: Literal["api_key"]
    type: Literal["api_key.created"]
    version: Literal[1]


class ApiKeyCreatedPayload(TypedDict):
    name: str
    scopes: list[str]


class ApiKeyCreatedWebhook(TypedDict):
    data: ApiKeyCreatedData
    timestamp: str
    type: Literal["api_key.created"]


class ApiKeyOut(TypedDict):
    created_at: str
    created_by: str | None
    expires_at: str | None
    id: str
    last_used_at: str | None
    last_used_ip: str | None
    name: str
    org_id: str
    prefix: str
    revoked_at: str | None
    scopes: list[str]


class ApiKeyRevokedData(TypedDict):
    actor: Actor
    created_at: str
    id: str
    org_id: str | None
    payload: ApiKeyRevokedPayload
    resource_id: str
    resource_type: Literal["api_key"]
    type: Literal["api_key.revoked"]
    version: Literal[1]


class ApiKeyRevokedPayload(TypedDict):
    name: str
    scopes: list[str]


class ApiKeyRevokedWebhook(TypedDict):
    data: ApiKeyRevokedData
    timestamp: str
    type: Literal["api_key.revoked"]


class ApiKeyRotatedData(TypedDict):
    actor: Actor
    created_at: str
    id: str
    org_id: str | None
    payload: ApiKeyRotatedPayload
    resource_id: str
    resource_type: Literal["api_key"]
    type: Literal["api_key.rotated"]
    version: Literal[1]


class ApiKeyRotatedPayload(TypedDict):
    name: str
    scopes: list[str]


class ApiKeyRotatedWebhook(TypedDict):
    data: ApiKeyRotatedData
    timestamp: str
    type: Literal["api_key.rotated"]


class ApiKeyWithSecret(TypedDict):
    created_at: str
    created_by: str | None
    expires_at: str | None
    id: str
    key: str
    last_used_at: str | None
    last_used_ip: str | None
    name: str
    org_id: str
    prefix: str
    revoked_at: str | None
    scopes: list[str]


class AuditEventOut(TypedDict):
    action: str
    actor_id: str | None
    actor_type: str
    created_at: str
    data: dict[str, Any]
    id: str
    ip: str | None
    target_id: str | None
    target_type: str | None
    user_agent: str | None


class BackupCodes(TypedDict):
    codes: list[str]


class BaseImageOut(TypedDict):
    created_at: str
    current: bool
    description: str | None
    error: str | None
    family: str
    finished_at: str | None
    id: str
    logs: NotRequired[str | None]
    org_id: str | None
    platform: bool
    progress: int
    promoted_at: str | None
    recipe: dict[str, Any]
    server_id: str | None
    status: str
    version: int


class Capabilities(TypedDict):
    checkpoints: bool
    driver: str
    fork: bool
    memory_preserved_on_rollback: bool


class Capacity(TypedDict):
    cpus: int
    disk_free_mb: int
    disk_mb: int
    memory_mb: int
    running_instances: int
    slots: int


class CategorySettings(TypedDict):
    category: str
    description: str
    email: bool
    in_app: bool
    locked: bool


class ChallengeFactor(TypedDict):
    hint: str | None
    id: str
    kind: str


class ChallengeIn(TypedDict):
    challenge_token: str


class ChallengeState(TypedDict):
    attempts_left: int
    expires_at: str
    factors: list[ChallengeFactor]
    kinds: list[str]


class ChangePasswordRequest(TypedDict):
    current_password: str
    new_password: str


class ChannelSettings(TypedDict):
    email: bool
    in_app: bool


class CheckpointCreate(TypedDict):
    name: NotRequired[str | None]


class CheckpointCreatedData(TypedDict):
    actor: Actor
    created_at: str
    id: str
    org_id: str | None
    payload: CheckpointCreatedPayload
    resource_id: str
    resource_type: Literal["checkpoint"]
    type: Literal["checkpoint.created"]
    version: Literal[1]


class CheckpointCreatedPayload(TypedDict):
    instance_id: str
    name: str | None
    parent_id: str | None
    reason: str


class CheckpointCreatedWebhook(TypedDict):
    data: CheckpointCreatedData
    timestamp: str
    type: Literal["checkpoint.created"]


class CheckpointDeletedData(TypedDict):
    actor: Actor
    created_at: str
    id: str
    org_id: str | None
    payload: CheckpointDeletedPayload
    resource_id: str
    resource_type: Literal["checkpoint"]
    type: Literal["checkpoint.deleted"]
    version: Literal[1]


class CheckpointDeletedPayload(TypedDict):
    instance_id: str
    name: str | None


class CheckpointDeletedWebhook(TypedDict):
    data: CheckpointDeletedData
    timestamp: str
    type: Literal["checkpoint.deleted"]


class CheckpointOut(TypedDict):
    capture_ms: float
    created_at: str
    data_bytes: int
    disk_mb: int
    id: str
    instance_id: str
    name: str | None
    parent_id: str | None
    pause_ms: float
    reason: str


class CodeIn(TypedDict):
    code: str


class CodeSent(TypedDict):
    expires_at: str
    sent_to: str | None


class CodeSentTo(TypedDict):
    sent_to: str


class DeliveryOut(TypedDict):
    attempts: int
    created_at: str
    event_id: str
    event_type: str
    finished_at: str | None
    id: str
    last_status_code: int | None
    next_attempt_at: str | None
    org_id: str
    status: str
    webhook_id: str


class EditResultOut(TypedDict):
    count: int
    path: str
    replaced: int


class EmailChange(TypedDict):
    new_email: str


class EmailConfirm(TypedDict):
    token: str


class EnrollmentStarted(TypedDict):
    expires_at: str
    factor_id: str
    sent_to: str


class EventOut(TypedDict):
    actor: Actor
    created_at: str
    id: str
    org_id: str | None
    payload: dict[str, Any]
    resource_id: str
    resource_type: str
    type: str
    version: int


class ExecFinishedData(TypedDict):
    actor: Actor
    created_at: str
    id: str
    org_id: str | None
    payload: ExecFinishedPayload
    resource_id: str
    resource_type: Literal["exec"]
    type: Literal["exec.finished"]
    version: Literal[1]


class ExecFinishedPayload(TypedDict):
    duration_ms: float | None
    exit_code: int | None
    instance_id: str
    signal: NotRequired[int | None]
    status: str
    stderr_bytes: NotRequired[int | None]
    stdout_bytes: NotRequired[int | None]
    streamed: NotRequired[bool]
    truncated: NotRequired[bool]


class ExecFinishedWebhook(TypedDict):
    data: ExecFinishedData
    timestamp: str
    type: Literal["exec.finished"]


class ExecRecordOut(TypedDict):
    command: str
    created_at: str
    duration_ms: float | None
    exit_code: int | None
    finished_at: str | None
    id: str
    status: str
    streamed: bool


class ExecRequest(TypedDict):
    command: str | list[str]
    cwd: NotRequired[str | None]
    env: NotRequired[dict[str, str] | None]
    stdin: NotRequired[str | None]
    stdin_encoding: NotRequired[Literal["utf-8", "base64"]]
    timeout_s: NotRequired[float | None]


class ExecResultOut(TypedDict):
    duration_ms: float
    encoding: Literal["utf-8", "base64"]
    exec_id: str
    exit_code: int
    signal: int | None
    stderr: str
    stdout: str
    timed_out: bool
    truncated: bool


class Factor(TypedDict):
    created_at: str
    hint: str | None
    id: str
    kind: Literal["totp", "sms", "email", "webauthn"]
    last_used_at: str | None
    name: str


class FactorList(TypedDict):
    backup_codes_remaining: int
    data: list[Factor]


class FileEdit(TypedDict):
    new_str: str
    old_str: str
    path: str
    replace_all: NotRequired[bool]


class FileEntry(TypedDict):
    mode: int
    modified_at: str
    name: str
    path: str
    size: int
    target: NotRequired[str | None]
    type: str


class FileWrite(TypedDict):
    content: str
    encoding: NotRequired[Literal["utf-8", "base64"]]
    make_parents: NotRequired[bool]
    mode: NotRequired[int | None]
    path: str


class ForgotPasswordRequest(TypedDict):
    email: str


class ForkChild(TypedDict):
    error: ForkError | None
    index: int
    instance: InstanceOut | None


class ForkError(TypedDict):
    code: str
    message: str


class ForkOut(TypedDict):
    children: list[ForkChild]
    fork_ms: float
    parent_id: str


class ForkOverrides(TypedDict):
    env: NotRequired[dict[str, str] | None]
    labels: NotRequired[dict[str, str] | None]
    memory_mb: NotRequired[int | None]
    vcpus: NotRequired[float | None]


class ForkRequest(TypedDict):
    count: NotRequired[int]
    name_prefix: NotRequired[str | None]
    overrides: NotRequired[ForkOverrides | None]


class HTTPValidationError(TypedDict):
    detail: NotRequired[list[ValidationError]]


class HealthStatus(TypedDict):
    checks: dict[str, Any]
    status: str


class HeartbeatRequest(TypedDict):
    capacity: Capacity
    instances: NotRequired[dict[str, str]]


class HeartbeatResponse(TypedDict):
    ok: bool


class ImageAbortedData(TypedDict):
    actor: Actor
    created_at: str
    id: str
    org_id: str | None
    payload: ImageAbortedPayload
    resource_id: str
    resource_type: Literal["image"]
    type: Literal["image.aborted"]
    version: Literal[1]


class ImageAbortedPayload(TypedDict):
    family: str
    image_version: int


class ImageAbortedWebhook(TypedDict):
    data: ImageAbortedData
    timestamp: str
    type: Literal["image.aborted"]


class ImageBuildStartedData(TypedDict):
    actor: Actor
    created_at: str
    id: str
    org_id: str | None
    payload: ImageBuildStartedPayload
    resource_id: str
    resource_type: Literal["image"]
    type: Literal["image.build_started"]
    version: Literal[1]


class ImageBuildStartedPayload(TypedDict):
    family: str
    image_version: int


class ImageBuildStartedWebhook(TypedDict):
    data: ImageBuildStartedData
    timestamp: str
    type: Literal["image.build_started"]


class ImageDeletedData(TypedDict):
    actor: Actor
    created_at: str
    id: str
    org_id: str | None
    payload: ImageDeletedPayload
    resource_id: str
    resource_type: Literal["image"]
    type: Literal["image.deleted"]
    version: Literal[1]


class ImageDeletedPayload(TypedDict):
    family: str
    image_version: int


class ImageDeletedWebhook(TypedDict):
    data: ImageDeletedData
    timestamp: str
    type: Literal["image.deleted"]


class ImageFailedData(TypedDict):
    actor: Actor
    created_at: str
    id: str
    org_id: str | None
    payload: ImageFailedPayload
    resource_id: str
    resource_type: Literal["image"]
    type: Literal["image.failed"]
    version: Literal[1]


class ImageFailedPayload(TypedDict):
    error: str | None
    family: str
    image_version: int


class ImageFailedWebhook(TypedDict):
    data: ImageFailedData
    timestamp: str
    type: Literal["image.failed"]


class ImagePrepare(TypedDict):
    """A recipe: exactly one source (`from_snapshot`, `base_image` or `suite`), then, for the"""

    base_image: NotRequired[str | None]
    commands: NotRequired[list[str]]
    description: NotRequired[str | None]
    disk_mb: NotRequired[int]
    family: str
    from_snapshot: NotRequired[str | None]
    packages: NotRequired[list[str]]
    platform: NotRequired[bool]
    suite: NotRequired[str | None]


class ImagePromotedData(TypedDict):
    actor: Actor
    created_at: str
    id: str
    org_id: str | None
    payload: ImagePromotedPayload
    resource_id: str
    resource_type: Literal["image"]
    type: Literal["image.promoted"]
    version: Literal[1]


class ImagePromotedPayload(TypedDict):
    family: str
    image_version: int


class ImagePromotedWebhook(TypedDict):
    data: ImagePromotedData
    timestamp: str
    type: Literal["image.promoted"]


class ImageReadyData(TypedDict):
    actor: Actor
    created_at: str
    id: str
    org_id: str | None
    payload: ImageReadyPayload
    resource_id: str
    resource_type: Literal["image"]
    type: Literal["image.ready"]
    version: Literal[1]


class ImageReadyPayload(TypedDict):
    family: str
    image_version: int


class ImageReadyWebhook(TypedDict):
    data: ImageReadyData
    timestamp: str
    type: Literal["image.ready"]


class ImageRef(TypedDict):
    image_id: str


class InstanceCreate(TypedDict):
    disk_mb: NotRequired[int | None]
    env: NotRequired[dict[str, str] | None]
    idle_timeout_s: NotRequired[int | None]
    image: NotRequired[str | None]
    labels: NotRequired[dict[str, str] | None]
    memory_mb: NotRequired[int | None]
    name: NotRequired[str | None]
    network: NotRequired[Network | None]
    profile_id: NotRequired[str | None]
    vcpus: NotRequired[float | None]


class InstanceCreatedData(TypedDict):
    actor: Actor
    created_at: str
    id: str
    org_id: str | None
    payload: InstanceCreatedPayload
    resource_id: str
    resource_type: Literal["instance"]
    type: Literal["instance.created"]
    version: Literal[1]


class InstanceCreatedPayload(TypedDict):
    disk_mb: int
    image: str
    memory_mb: int
    server_id: str | None
    source: dict[str, str]
    status: str
    status_reason: str | None
    vcpus: float


class InstanceCreatedWebhook(TypedDict):
    data: InstanceCreatedData
    timestamp: str
    type: Literal["instance.created"]


class InstanceDeletedData(TypedDict):
    actor: Actor
    created_at: str
    id: str
    org_id: str | None
    payload: InstanceDeletedPayload
    resource_id: str
    resource_type: Literal["instance"]
    type: Literal["instance.deleted"]
    version: Literal[1]


class InstanceDeletedPayload(TypedDict):
    server_id: str | None
    status: str
    status_reason: str | None


class InstanceDeletedWebhook(TypedDict):
    data: InstanceDeletedData
    timestamp: str
    type: Literal["instance.deleted"]


class InstanceErrorData(TypedDict):
    actor: Actor
    created_at: str
    id: str
    org_id: str | None
    payload: InstanceErrorPayload
    resource_id: str
    resource_type: Literal["instance"]
    type: Literal["instance.error"]
    version: Literal[1]


class InstanceErrorPayload(TypedDict):
    server_id: str | None
    status: str
    status_reason: str | None


class InstanceErrorWebhook(TypedDict):
    data: InstanceErrorData
    timestamp: str
    type: Literal["instance.error"]


class InstanceForkedData(TypedDict):
    actor: Actor
    created_at: str
    id: str
    org_id: str | None
    payload: InstanceForkedPayload
    resource_id: str
    resource_type: Literal["instance"]
    type: Literal["instance.forked"]
    version: Literal[1]


class InstanceForkedPayload(TypedDict):
    children: list[str]
    server_id: str | None
    status: str
    status_reason: str | None


class InstanceForkedWebhook(TypedDict):
    data: InstanceForkedData
    timestamp: str
    type: Literal["instance.forked"]


class InstanceOut(TypedDict):
    capabilities: Capabilities
    created_at: str
    disk_mb: int
    env: dict[str, str]
    id: str
    idle_timeout_s: int | None
    image: str
    labels: dict[str, str]
    last_activity_at: str
    memory_mb: int
    name: str
    network: Network
    org_id: str
    profile_id: str | None
    server_id: str | None
    status: str
    status_reason: str | None
    updated_at: str | None
    vcpus: float


class InstanceRolledBackData(TypedDict):
    actor: Actor
    created_at: str
    id: str
    org_id: str | None
    payload: InstanceRolledBackPayload
    resource_id: str
    resource_type: Literal["instance"]
    type: Literal["instance.rolled_back"]
    version: Literal[1]


class InstanceRolledBackPayload(TypedDict):
    kept_checkpoint_id: str
    processes_restarted: bool
    server_id: str | None
    status: str
    status_reason: str | None
    to_checkpoint_id: str | None
    to_snapshot_id: str | None


class InstanceRolledBackWebhook(TypedDict):
    data: InstanceRolledBackData
    timestamp: str
    type: Literal["instance.rolled_back"]


class InstanceRunningData(TypedDict):
    actor: Actor
    created_at: str
    id: str
    org_id: str | None
    payload: InstanceRunningPayload
    resource_id: str
    resource_type: Literal["instance"]
    type: Literal["instance.running"]
    version: Literal[1]


class InstanceRunningPayload(TypedDict):
    server_id: str | None
    status: str
    status_reason: str | None


class InstanceRunningWebhook(TypedDict):
    data: InstanceRunningData
    timestamp: str
    type: Literal["instance.running"]


class InstanceStoppedData(TypedDict):
    actor: Actor
    created_at: str
    id: str
    org_id: str | None
    payload: InstanceStoppedPayload
    resource_id: str
    resource_type: Literal["instance"]
    type: Literal["instance.stopped"]
    version: Literal[1]


class InstanceStoppedPayload(TypedDict):
    server_id: str | None
    status: str
    status_reason: str | None


class InstanceStoppedWebhook(TypedDict):
    data: InstanceStoppedData
    timestamp: str
    type: Literal["instance.stopped"]


class InstanceUpdate(TypedDict):
    idle_timeout_s: NotRequired[int | None]
    labels: NotRequired[dict[str, str] | None]
    name: NotRequired[str | None]
    network: NotRequired[Network | None]


class Invitation(TypedDict):
    """An invitation as org admins see it (the token is only ever emailed)."""

    created_at: str
    email: str
    expires_at: str
    id: str
    invited_by: str | None
    org_id: str
    role: Literal["owner", "admin", "member", "viewer"]


class InvitationAcceptedData(TypedDict):
    actor: Actor
    created_at: str
    id: str
    org_id: str | None
    payload: InvitationAcceptedPayload
    resource_id: str
    resource_type: Literal["invitation"]
    type: Literal["invitation.accepted"]
    version: Literal[1]


class InvitationAcceptedPayload(TypedDict):
    email: str
    role: str
    user_id: str


class InvitationAcceptedWebhook(TypedDict):
    data: InvitationAcceptedData
    timestamp: str
    type: Literal["invitation.accepted"]


class InvitationCreate(TypedDict):
    email: str
    role: NotRequired[Literal["owner", "admin", "member", "viewer"]]


class InvitationCreatedData(TypedDict):
    actor: Actor
    created_at: str
    id: str
    org_id: str | None
    payload: InvitationCreatedPayload
    resource_id: str
    resource_type: Literal["invitation"]
    type: Literal["invitation.created"]
    version: Literal[1]


class InvitationCreatedPayload(TypedDict):
    email: str
    role: str
    superseded: list[str]


class InvitationCreatedWebhook(TypedDict):
    data: InvitationCreatedData
    timestamp: str
    type: Literal["invitation.created"]


class InvitationPreview(TypedDict):
    """What the invitee sees before accepting."""

    email: str
    expires_at: str
    inviter: Inviter | None
    org_id: str
    org_name: str
    role: Literal["owner", "admin", "member", "viewer"]


class InvitationRevokedData(TypedDict):
    actor: Actor
    created_at: str
    id: str
    org_id: str | None
    payload: InvitationRevokedPayload
    resource_id: str
    resource_type: Literal["invitation"]
    type: Literal["invitation.revoked"]
    version: Literal[1]


class InvitationRevokedPayload(TypedDict):
    email: str
    role: str


class InvitationRevokedWebhook(TypedDict):
    data: InvitationRevokedData
    timestamp: str
    type: Literal["invitation.revoked"]


class Inviter(TypedDict):
    email: str
    id: str
    name: str


class LanguageServer(TypedDict):
    command: list[str]
    language: str
    name: str
    path: str
    running: list[LspRunning]


class LoginRequest(TypedDict):
    email: str
    password: str


class LoginResult(TypedDict):
    challenge_token: NotRequired[str | None]
    factors: NotRequired[list[str] | None]
    mfa_required: bool
    session_id: str | None
    user: User | None


class LspRunning(TypedDict):
    clients: int
    root: str
    started_at: str


class MagicLinkRequest(TypedDict):
    email: str


class Member(TypedDict):
    email: str
    joined_at: str
    name: str
    org_id: str
    role: Literal["owner", "admin", "member", "viewer"]
    user_id: str


class MemberAddedData(TypedDict):
    actor: Actor
    created_at: str
    id: str
    org_id: str | None
    payload: MemberAddedPayload
    resource_id: str
    resource_type: Literal["user"]
    type: Literal["member.added"]
    version: Literal[1]


class MemberAddedPayload(TypedDict):
    invitation_id: str | None
    role: str


class MemberAddedWebhook(TypedDict):
    data: MemberAddedData
    timestamp: str
    type: Literal["member.added"]


class MemberRemovedData(TypedDict):
    actor: Actor
    created_at: str
    id: str
    org_id: str | None
    payload: MemberRemovedPayload
    resource_id: str
    resource_type: Literal["user"]
    type: Literal["member.removed"]
    version: Literal[1]


class MemberRemovedPayload(TypedDict):
    left: bool
    revoked_api_keys: list[str]
    role: str


class MemberRemovedWebhook(TypedDict):
    data: MemberRemovedData
    timestamp: str
    type: Literal["member.removed"]


class MemberRoleChangedData(TypedDict):
    actor: Actor
    created_at: str
    id: str
    org_id: str | None
    payload: MemberRoleChangedPayload
    resource_id: str
    resource_type: Literal["user"]
    type: Literal["member.role_changed"]
    version: Literal[1]


class MemberRoleChangedPayload(TypedDict):
    previous_role: str
    revoked_api_keys: list[str]
    role: str


class MemberRoleChangedWebhook(TypedDict):
    data: MemberRoleChangedData
    timestamp: str
    type: Literal["member.role_changed"]


class MemberUpdate(TypedDict):
    role: Literal["owner", "admin", "member", "viewer"]


class Message(TypedDict):
    message: str


class Metrics(TypedDict):
    instances: dict[str, int]
    metrics: dict[str, Any]
    server_id: str


class MfaVerify(TypedDict):
    challenge_token: str
    code: str


class Network(TypedDict):
    """What an instance may reach (ADR 0015). "none": loopback only. "allowlist": only `allow`"""

    allow: NotRequired[list[str]]
    egress: NotRequired[Literal["none", "allowlist", "open"]]


class NotificationOut(TypedDict):
    body: str
    category: str
    created_at: str
    data: dict[str, Any]
    event_id: str
    id: str
    kind: str
    org_id: str | None
    read_at: str | None
    title: str


class NotificationSettings(TypedDict):
    categories: list[CategorySettings]


class NotificationSettingsUpdate(TypedDict):
    categories: dict[str, ChannelSettings]


class Org(TypedDict):
    created_at: str
    id: str
    is_personal: bool
    name: str
    role: Literal["owner", "admin", "member", "viewer"] | None


class OrgCreate(TypedDict):
    name: str


class OrgUpdate(TypedDict):
    name: NotRequired[str | None]


class Page_AllowlistEntry_(TypedDict):
    data: list[AllowlistEntry]
    next_cursor: str | None


class Page_ApiKeyOut_(TypedDict):
    data: list[ApiKeyOut]
    next_cursor: str | None


class Page_AuditEventOut_(TypedDict):
    data: list[AuditEventOut]
    next_cursor: str | None


class Page_BaseImageOut_(TypedDict):
    data: list[BaseImageOut]
    next_cursor: str | None


class Page_CheckpointOut_(TypedDict):
    data: list[CheckpointOut]
    next_cursor: str | None


class Page_DeliveryOut_(TypedDict):
    data: list[DeliveryOut]
    next_cursor: str | None


class Page_EventOut_(TypedDict):
    data: list[EventOut]
    next_cursor: str | None


class Page_ExecRecordOut_(TypedDict):
    data: list[ExecRecordOut]
    next_cursor: str | None


class Page_FileEntry_(TypedDict):
    data: list[FileEntry]
    next_cursor: str | None


class Page_InstanceOut_(TypedDict):
    data: list[InstanceOut]
    next_cursor: str | None


class Page_Invitation_(TypedDict):
    data: list[Invitation]
    next_cursor: str | None


class Page_LanguageServer_(TypedDict):
    data: list[LanguageServer]
    next_cursor: str | None


class Page_Member_(TypedDict):
    data: list[Member]
    next_cursor: str | None


class Page_NotificationOut_(TypedDict):
    data: list[NotificationOut]
    next_cursor: str | None


class Page_Org_(TypedDict):
    data: list[Org]
    next_cursor: str | None


class Page_PortForwardOut_(TypedDict):
    data: list[PortForwardOut]
    next_cursor: str | None


class Page_ProfileOut_(TypedDict):
    data: list[ProfileOut]
    next_cursor: str | None


class Page_ServerOut_(TypedDict):
    data: list[ServerOut]
    next_cursor: str | None


class Page_Session_(TypedDict):
    data: list[Session]
    next_cursor: str | None


class Page_SnapshotOut_(TypedDict):
    data: list[SnapshotOut]
    next_cursor: str | None


class Page_SshKeyOut_(TypedDict):
    data: list[SshKeyOut]
    next_cursor: str | None


class Page_WebhookAttemptOut_(TypedDict):
    data: list[WebhookAttemptOut]
    next_cursor: str | None


class Page_Webhook_(TypedDict):
    data: list[Webhook]
    next_cursor: str | None


class PhoneCode(TypedDict):
    code: str
    phone: str


class PhoneIn(TypedDict):
    phone: str


class PortForwardCreate(TypedDict):
    name: NotRequired[str | None]
    port: int
    protocol: NotRequired[Literal["http", "tcp"]]
    visibility: NotRequired[Literal["private", "public"]]


class PortForwardCreatedData(TypedDict):
    actor: Actor
    created_at: str
    id: str
    org_id: str | None
    payload: PortForwardCreatedPayload
    resource_id: str
    resource_type: Literal["port_forward"]
    type: Literal["port_forward.created"]
    version: Literal[1]


class PortForwardCreatedPayload(TypedDict):
    instance_id: str
    port: int
    protocol: str
    visibility: str


class PortForwardCreatedWebhook(TypedDict):
    data: PortForwardCreatedData
    timestamp: str
    type: Literal["port_forward.created"]


class PortForwardDeletedData(TypedDict):
    actor: Actor
    created_at: str
    id: str
    org_id: str | None
    payload: PortForwardDeletedPayload
    resource_id: str
    resource_type: Literal["port_forward"]
    type: Literal["port_forward.deleted"]
    version: Literal[1]


class PortForwardDeletedPayload(TypedDict):
    instance_id: str
    port: int
    protocol: str
    visibility: str


class PortForwardDeletedWebhook(TypedDict):
    data: PortForwardDeletedData
    timestamp: str
    type: Literal["port_forward.deleted"]


class PortForwardOut(TypedDict):
    created_at: str
    id: str
    instance_id: str
    name: str | None
    port: int
    protocol: Literal["http", "tcp"]
    url: str
    visibility: Literal["private", "public"]


class ProcessQueueResult(TypedDict):
    attempted: int
    delivered: int


class ProfileCreate(TypedDict):
    disk_mb: NotRequired[int]
    env: NotRequired[dict[str, str]]
    idle_timeout_s: NotRequired[int | None]
    image: NotRequired[str]
    memory_mb: NotRequired[int]
    name: str
    network: NotRequired[Network | None]
    setup_commands: NotRequired[list[str]]
    vcpus: NotRequired[float]


class ProfileOut(TypedDict):
    created_at: str
    disk_mb: int
    env: dict[str, str]
    id: str
    idle_timeout_s: int | None
    image: str
    memory_mb: int
    name: str
    network: Network | None
    org_id: str
    setup_commands: list[str]
    updated_at: str | None
    vcpus: float


class ProfileUpdate(TypedDict):
    disk_mb: NotRequired[int | None]
    env: NotRequired[dict[str, str] | None]
    idle_timeout_s: NotRequired[int | None]
    image: NotRequired[str | None]
    memory_mb: NotRequired[int | None]
    name: NotRequired[str | None]
    network: NotRequired[Network | None]
    setup_commands: NotRequired[list[str] | None]
    vcpus: NotRequired[float | None]


class ProviderList(TypedDict):
    data: list[ProviderOut]


class ProviderOut(TypedDict):
    authorize_url: str
    id: str
    name: str
    type: Literal["oidc", "github"]


class PublicUser(TypedDict):
    """What another member of a shared org may see."""

    created_at: str
    email: str
    id: str
    name: str


class QuotaNearlyReachedData(TypedDict):
    actor: Actor
    created_at: str
    id: str
    org_id: str | None
    payload: QuotaNearlyReachedPayload
    resource_id: str
    resource_type: Literal["org"]
    type: Literal["quota.nearly_reached"]
    version: Literal[1]


class QuotaNearlyReachedPayload(TypedDict):
    in_use: int | float
    limit: str
    max: int | float
    threshold_pct: int


class QuotaNearlyReachedWebhook(TypedDict):
    data: QuotaNearlyReachedData
    timestamp: str
    type: Literal["quota.nearly_reached"]


class ReadAllResult(TypedDict):
    marked: int


class ReapRequest(TypedDict):
    older_than: int


class ReapResult(TypedDict):
    reaped: int


class RecoveryComplete(TypedDict):
    token: str


class RecoveryRequest(TypedDict):
    email: str


class RegisterRequest(TypedDict):
    capacity: Capacity
    credential: NotRequired[str | None]
    driver: str
    driver_version: NotRequired[str]
    instances: NotRequired[dict[str, str]]
    name: str
    secret: str
    url: str


class RegisterResponse(TypedDict):
    credential: str | None
    instances: dict[str, str]
    layers: NotRequired[list[str] | None]
    server_id: str


class ResetPasswordRequest(TypedDict):
    new_password: str
    token: str


class RestoreOut(TypedDict):
    checkpoint: CheckpointOut | None
    instance: InstanceOut
    memory_preserved: bool
    new_instance: bool
    processes_restarted: bool


class RestoreRequest(TypedDict):
    new_instance: NotRequired[InstanceCreate | None]


class RevokedCount(TypedDict):
    revoked: int


class RollbackOut(TypedDict):
    checkpoint: CheckpointOut
    instance: InstanceOut
    memory_preserved: bool
    processes_restarted: bool
    rolled_back_to: str


class RollbackRequest(TypedDict):
    checkpoint_id: str


class SendCode(TypedDict):
    challenge_token: str
    factor: Literal["sms", "email"]
    factor_id: NotRequired[str | None]


class ServerOut(TypedDict):
    cpus: int
    created_at: str
    disk_free_mb: int
    disk_mb: int
    driver: str
    driver_version: str
    id: str
    last_heartbeat_at: str | None
    memory_mb: int
    name: str
    running_instances: int
    slots: int
    stale: bool
    status: str
    url: str


class ServerStatusUpdate(TypedDict):
    status: Literal["active", "draining", "disabled"]


class Session(TypedDict):
    created_at: str
    current: bool
    device: str | None
    id: str
    ip: str | None
    last_seen_at: str
    user_agent: str | None


class SetPasswordRequest(TypedDict):
    new_password: str


class ShareOut(TypedDict):
    expires_at: str
    url: str


class SignupRequest(TypedDict):
    email: str
    name: NotRequired[str]
    password: str


class SmsEnroll(TypedDict):
    phone: str


class SnapshotCreate(TypedDict):
    description: NotRequired[str | None]
    name: str


class SnapshotCreatedData(TypedDict):
    actor: Actor
    created_at: str
    id: str
    org_id: str | None
    payload: SnapshotCreatedPayload
    resource_id: str
    resource_type: Literal["snapshot"]
    type: Literal["snapshot.created"]
    version: Literal[1]


class SnapshotCreatedPayload(TypedDict):
    instance_id: str | None
    name: str | None


class SnapshotCreatedWebhook(TypedDict):
    data: SnapshotCreatedData
    timestamp: str
    type: Literal["snapshot.created"]


class SnapshotDeletedData(TypedDict):
    actor: Actor
    created_at: str
    id: str
    org_id: str | None
    payload: SnapshotDeletedPayload
    resource_id: str
    resource_type: Literal["snapshot"]
    type: Literal["snapshot.deleted"]
    version: Literal[1]


class SnapshotDeletedPayload(TypedDict):
    instance_id: str | None
    name: str | None


class SnapshotDeletedWebhook(TypedDict):
    data: SnapshotDeletedData
    timestamp: str
    type: Literal["snapshot.deleted"]


class SnapshotOut(TypedDict):
    created_at: str
    data_bytes: int
    description: str | None
    disk_mb: int
    id: str
    instance_id: str | None
    instance_name: str
    name: str
    server_id: str


class SshAccessOut(TypedDict):
    command: str
    host: str
    host_key_fingerprint: str
    known_hosts_line: str
    port: int
    username: str


class SshKeyCreate(TypedDict):
    name: str
    public_key: str


class SshKeyOut(TypedDict):
    created_at: str
    fingerprint: str
    id: str
    key_type: str
    last_used_at: str | None
    name: str
    public_key: str


class SudoGrantOut(TypedDict):
    expires_at: str


class SudoRequest(TypedDict):
    password: str


class TotpEnrollment(TypedDict):
    factor_id: str
    otpauth_uri: str
    qr_svg: str
    secret: str


class TotpFinish(TypedDict):
    code: str
    factor_id: NotRequired[str | None]
    name: NotRequired[str]


class User(TypedDict):
    """The signed-in user's own account."""

    created_at: str
    email: str
    email_verified: bool
    has_password: bool
    id: str
    is_staff: bool
    name: str
    personal_org_id: str | None
    phone: str | None


class UserBackupCodesRegeneratedData(TypedDict):
    actor: Actor
    created_at: str
    id: str
    org_id: str | None
    payload: UserBackupCodesRegeneratedPayload
    resource_id: str
    resource_type: Literal["user"]
    type: Literal["user.backup_codes_regenerated"]
    version: Literal[1]


UserBackupCodesRegeneratedPayload = dict[str, Any]


class UserBackupCodesRegeneratedWebhook(TypedDict):
    data: UserBackupCodesRegeneratedData
    timestamp: str
    type: Literal["user.backup_codes_regenerated"]


class UserDeletedData(TypedDict):
    actor: Actor
    created_at: str
    id: str
    org_id: str | None
    payload: UserDeletedPayload
    resource_id: str
    resource_type: Literal["user"]
    type: Literal["user.deleted"]
    version: Literal[1]


class UserDeletedPayload(TypedDict):
    personal_org_id: str | None


class UserDeletedWebhook(TypedDict):
    data: UserDeletedData
    timestamp: str
    type: Literal["user.deleted"]


class UserMfaFactorAddedData(TypedDict):
    actor: Actor
    created_at: str
    id: str
    org_id: str | None
    payload: UserMfaFactorAddedPayload
    resource_id: str
    resource_type: Literal["user"]
    type: Literal["user.mfa_factor_added"]
    version: Literal[1]


class UserMfaFactorAddedPayload(TypedDict):
    factor_id: str
    kind: str


class UserMfaFactorAddedWebhook(TypedDict):
    data: UserMfaFactorAddedData
    timestamp: str
    type: Literal["user.mfa_factor_added"]


class UserMfaFactorRemovedData(TypedDict):
    actor: Actor
    created_at: str
    id: str
    org_id: str | None
    payload: UserMfaFactorRemovedPayload
    resource_id: str
    resource_type: Literal["user"]
    type: Literal["user.mfa_factor_removed"]
    version: Literal[1]


class UserMfaFactorRemovedPayload(TypedDict):
    factor_id: str | None
    kind: str | None
    reason: Literal["removed", "recovery"]


class UserMfaFactorRemovedWebhook(TypedDict):
    data: UserMfaFactorRemovedData
    timestamp: str
    type: Literal["user.mfa_factor_removed"]


class UserPasswordChangedData(TypedDict):
    actor: Actor
    created_at: str
    id: str
    org_id: str | None
    payload: UserPasswordChangedPayload
    resource_id: str
    resource_type: Literal["user"]
    type: Literal["user.password_changed"]
    version: Literal[1]


class UserPasswordChangedPayload(TypedDict):
    how: Literal["set", "changed", "reset"]


class UserPasswordChangedWebhook(TypedDict):
    data: UserPasswordChangedData
    timestamp: str
    type: Literal["user.password_changed"]


class UserSignedInData(TypedDict):
    actor: Actor
    created_at: str
    id: str
    org_id: str | None
    payload: UserSignedInPayload
    resource_id: str
    resource_type: Literal["user"]
    type: Literal["user.signed_in"]
    version: Literal[1]


class UserSignedInPayload(TypedDict):
    method: str
    mfa: bool
    session_id: str


class UserSignedInWebhook(TypedDict):
    data: UserSignedInData
    timestamp: str
    type: Literal["user.signed_in"]


class UserUpdate(TypedDict):
    name: NotRequired[str | None]


class ValidationError(TypedDict):
    ctx: NotRequired[dict[str, Any]]
    input: NotRequired[Any]
    loc: list[str | int]
    msg: str
    type: str


class VerifyEmailResult(TypedDict):
    email: str
    password_kept: bool
    verified: bool


class VmOut(TypedDict):
    boot_ms: float | None
    boots: int
    cpu_seconds: NotRequired[float | None]
    disk_total_bytes: NotRequired[int | None]
    disk_used_bytes: NotRequired[int | None]
    id: str
    instance_id: str
    memory_bytes: NotRequired[int | None]
    memory_limit_bytes: NotRequired[int | None]
    pid: int | None
    pids: NotRequired[int | None]
    server_id: str | None
    started_at: str | None
    state: str
    stopped_at: str | None
    uptime_s: float | None


class WebauthnLoginBegin(TypedDict):
    options: dict[str, Any]


class WebauthnLoginFinish(TypedDict):
    challenge_token: str
    credential: dict[str, Any]


class WebauthnRegisterBegin(TypedDict):
    factor_id: str
    options: dict[str, Any]


class WebauthnRegisterFinish(TypedDict):
    credential: dict[str, Any]
    factor_id: str
    name: NotRequired[str]


class Webhook(TypedDict):
    created_at: str
    description: str | None
    disabled_reason: str | None
    enabled: bool
    event_types: list[str]
    failing_since: str | None
    id: str
    org_id: str
    previous_secret_expires_at: str | None
    updated_at: str | None
    url: str


class WebhookAttemptOut(TypedDict):
    attempt: int
    created_at: str
    delivery_id: str
    delivery_status: str
    duration_ms: int
    error: str | None
    event_id: str
    event_type: str
    id: str
    next_attempt_at: str | None
    response_excerpt: str | None
    status_code: int | None
    succeeded: bool
    webhook_id: str


class WebhookCreate(TypedDict):
    description: NotRequired[str | None]
    enabled: NotRequired[bool]
    event_types: NotRequired[list[str]]
    url: str


class WebhookDisabledData(TypedDict):
    actor: Actor
    created_at: str
    id: str
    org_id: str | None
    payload: WebhookDisabledPayload
    resource_id: str
    resource_type: Literal["webhook"]
    type: Literal["webhook.disabled"]
    version: Literal[1]


class WebhookDisabledPayload(TypedDict):
    failing_since: str
    url: str


class WebhookDisabledWebhook(TypedDict):
    data: WebhookDisabledData
    timestamp: str
    type: Literal["webhook.disabled"]


class WebhookTestData(TypedDict):
    actor: Actor
    created_at: str
    id: str
    org_id: str | None
    payload: WebhookTestPayload
    resource_id: str
    resource_type: Literal["webhook"]
    type: Literal["webhook.test"]
    version: Literal[1]


class WebhookTestPayload(TypedDict):
    url: str


class WebhookTestWebhook(TypedDict):
    data: WebhookTestData
    timestamp: str
    type: Literal["webhook.test"]


class WebhookUpdate(TypedDict):
    description: NotRequired[str | None]
    enabled: NotRequired[bool | None]
    event_types: NotRequired[list[str] | None]
    rotate_secret: NotRequired[bool | None]
    url: NotRequired[str | None]


class WebhookWithSecret(TypedDict):
    created_at: str
    description: str | None
    disabled_reason: str | None
    enabled: bool
    event_types: list[str]
    failing_since: str | None
    id: str
    org_id: str
    previous_secret_expires_at: str | None
    secret: str | None
    updated_at: str | None
    url: str


class AccountSshKeysApi:
    """Operations tagged `account_ssh_keys`."""

    def __init__(self, core: SyncCore) -> None:
        self._core = core

    def list_ssh_keys(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> Page_SshKeyOut_:
        """Your SSH public keys, newest first.

        `GET /v1/account/ssh-keys` (reference: account_ssh_keys-list_ssh_keys.html)"""
        return cast(
            "Page_SshKeyOut_",
            self._core.op(
                "account_ssh_keys-list_ssh_keys",
                {},
                {"limit": limit, "cursor": cursor},
                None,
                "json",
            ),
        )

    def add_ssh_key(self, body: SshKeyCreate) -> SshKeyOut:
        """Add an SSH public key (ed25519, ECDSA, or RSA of 2048 bits or more).

        `POST /v1/account/ssh-keys` (reference: account_ssh_keys-add_ssh_key.html)"""
        return cast(
            "SshKeyOut", self._core.op("account_ssh_keys-add_ssh_key", {}, {}, body, "json")
        )

    def delete_ssh_key(self, id: str) -> None:
        """Remove an SSH public key.

        `DELETE /v1/account/ssh-keys/{id}` (reference: account_ssh_keys-delete_ssh_key.html)"""
        return cast(
            "None", self._core.op("account_ssh_keys-delete_ssh_key", {"id": id}, {}, None, "none")
        )


class ApiKeysApi:
    """Operations tagged `api_keys`."""

    def __init__(self, core: SyncCore) -> None:
        self._core = core

    def list_api_keys(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> Page_ApiKeyOut_:
        """The org's keys (never their secrets), newest first.

        `GET /v1/api-keys` (reference: api_keys-list_api_keys.html)"""
        return cast(
            "Page_ApiKeyOut_",
            self._core.op(
                "api_keys-list_api_keys", {}, {"limit": limit, "cursor": cursor}, None, "json"
            ),
        )

    def create_api_key(self, body: ApiKeyCreate) -> ApiKeyWithSecret:
        """Create a key for the current org; the secret is returned once.

        `POST /v1/api-keys` (reference: api_keys-create_api_key.html)"""
        return cast(
            "ApiKeyWithSecret", self._core.op("api_keys-create_api_key", {}, {}, body, "json")
        )

    def get_api_key(self, id: str) -> ApiKeyOut:
        """One key's metadata: scopes, expiry and last use.

        `GET /v1/api-keys/{id}` (reference: api_keys-get_api_key.html)"""
        return cast(
            "ApiKeyOut", self._core.op("api_keys-get_api_key", {"id": id}, {}, None, "json")
        )

    def revoke_api_key(self, id: str) -> None:
        """Revoke a key; it stops working at once.

        `DELETE /v1/api-keys/{id}` (reference: api_keys-revoke_api_key.html)"""
        return cast("None", self._core.op("api_keys-revoke_api_key", {"id": id}, {}, None, "none"))

    def rotate_api_key(self, id: str) -> ApiKeyWithSecret:
        """Replace a key's secret (sudo): the old secret stops working, the new one is shown once.

        `POST /v1/api-keys/{id}/rotate` (reference: api_keys-rotate_api_key.html)"""
        return cast(
            "ApiKeyWithSecret",
            self._core.op("api_keys-rotate_api_key", {"id": id}, {}, None, "json"),
        )


class AuditApi:
    """Operations tagged `audit`."""

    def __init__(self, core: SyncCore) -> None:
        self._core = core

    def list_audit_events(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page_AuditEventOut_:
        """Security events for the caller's org, newest first (org admins).

        `GET /v1/audit` (reference: audit-list_audit_events.html)"""
        return cast(
            "Page_AuditEventOut_",
            self._core.op(
                "audit-list_audit_events",
                {},
                {
                    "actor": actor,
                    "action": action,
                    "target": target,
                    "since": since,
                    "until": until,
                    "limit": limit,
                    "cursor": cursor,
                },
                None,
                "json",
            ),
        )


class AuthApi:
    """Operations tagged `auth`."""

    def __init__(self, core: SyncCore) -> None:
        self._core = core

    def forgot_password(self, body: ForgotPasswordRequest) -> Message:
        """Email a password-reset link; the answer is the same whether or not the account exists.

        `POST /v1/auth/forgot-password` (reference: auth-forgot_password.html)"""
        return cast("Message", self._core.op("auth-forgot_password", {}, {}, body, "json"))

    def login(self, body: LoginRequest) -> LoginResult:
        """Sign in with email and password; sets the access, refresh and CSRF cookies.

        `POST /v1/auth/login` (reference: auth-login.html)"""
        return cast("LoginResult", self._core.op("auth-login", {}, {}, body, "json"))

    def consume_magic_link(self, *, token: str) -> LoginResult:
        """Use a sign-in link: sets the cookies, or answers with an MFA challenge.

        `GET /v1/auth/login/magic-link/consume` (reference: auth-consume_magic_link.html)"""
        return cast(
            "LoginResult",
            self._core.op("auth-consume_magic_link", {}, {"token": token}, None, "json"),
        )

    def request_magic_link(self, body: MagicLinkRequest) -> Message:
        """Email a sign-in link; the answer is the same for every address.

        `POST /v1/auth/login/magic-link/request` (reference: auth-request_magic_link.html)"""
        return cast("Message", self._core.op("auth-request_magic_link", {}, {}, body, "json"))

    def verify_login(self, body: MfaVerify) -> Any:
        """Finish a sign-in with a TOTP, SMS or email code, or a backup code; sets the cookies.

        `POST /v1/auth/login/mfa` (reference: auth-verify_login.html)"""
        return cast("Any", self._core.op("auth-verify_login", {}, {}, body, "json"))

    def send_login_code(self, body: SendCode) -> CodeSent:
        """Text or email a sign-in code for a pending challenge.

        `POST /v1/auth/login/mfa/send-code` (reference: auth-send_login_code.html)"""
        return cast("CodeSent", self._core.op("auth-send_login_code", {}, {}, body, "json"))

    def challenge_state(self, *, challenge_token: str) -> ChallengeState:
        """The factors and expiry of a pending sign-in challenge.

        `GET /v1/auth/login/mfa/state` (reference: auth-challenge_state.html)"""
        return cast(
            "ChallengeState",
            self._core.op(
                "auth-challenge_state", {}, {"challenge_token": challenge_token}, None, "json"
            ),
        )

    def webauthn_login_begin(self, body: ChallengeIn) -> WebauthnLoginBegin:
        """Options for navigator.credentials.get() for a pending sign-in challenge.

        `POST /v1/auth/login/mfa/webauthn/begin` (reference: auth-webauthn_login_begin.html)"""
        return cast(
            "WebauthnLoginBegin", self._core.op("auth-webauthn_login_begin", {}, {}, body, "json")
        )

    def webauthn_login_finish(self, body: WebauthnLoginFinish) -> Any:
        """Finish a sign-in with a passkey; sets the cookies like the code-based factors.

        `POST /v1/auth/login/mfa/webauthn/finish` (reference: auth-webauthn_login_finish.html)"""
        return cast("Any", self._core.op("auth-webauthn_login_finish", {}, {}, body, "json"))

    def logout(self) -> None:
        """Sign out this browser: revoke its session and clear the cookies.

        `POST /v1/auth/logout` (reference: auth-logout.html)"""
        return cast("None", self._core.op("auth-logout", {}, {}, None, "none"))

    def get_me(self) -> User:
        """The signed-in user's account.

        `GET /v1/auth/me` (reference: auth-get_me.html)"""
        return cast("User", self._core.op("auth-get_me", {}, {}, None, "json"))

    def update_me(self, body: UserUpdate) -> User:
        """Change the account's display name.

        `PATCH /v1/auth/me` (reference: auth-update_me.html)"""
        return cast("User", self._core.op("auth-update_me", {}, {}, body, "json"))

    def delete_me(self) -> None:
        """Soft-delete the calling user's account (sudo): sessions and keys revoked, memberships

        `DELETE /v1/auth/me` (reference: auth-delete_me.html)"""
        return cast("None", self._core.op("auth-delete_me", {}, {}, None, "none"))

    def change_email(self, body: EmailChange) -> Message:
        """Ask to change the email (sudo); the same answer whether or not the address is taken.

        `POST /v1/auth/me/email` (reference: auth-change_email.html)"""
        return cast("Message", self._core.op("auth-change_email", {}, {}, body, "json"))

    def confirm_email_change(self, body: EmailConfirm) -> Message:
        """Confirm the new address with the emailed token; every session is signed out.

        `POST /v1/auth/me/email/confirm` (reference: auth-confirm_email_change.html)"""
        return cast("Message", self._core.op("auth-confirm_email_change", {}, {}, body, "json"))

    def export_me(self) -> dict[str, Any]:
        """Every record stored about the calling user as one JSON document, secrets redacted.

        `POST /v1/auth/me/export` (reference: auth-export_me.html)"""
        return cast("dict[str, Any]", self._core.op("auth-export_me", {}, {}, None, "json"))

    def change_password(self, body: ChangePasswordRequest) -> Message:
        """Change the password (the current one is required); other sessions are signed out.

        `POST /v1/auth/me/password` (reference: auth-change_password.html)"""
        return cast("Message", self._core.op("auth-change_password", {}, {}, body, "json"))

    def change_phone(self, body: PhoneCode) -> User:
        """Change the phone in one step (sudo): the new number and the code just texted to it.

        `POST /v1/auth/me/phone` (reference: auth-change_phone.html)"""
        return cast("User", self._core.op("auth-change_phone", {}, {}, body, "json"))

    def regenerate_backup_codes(self) -> BackupCodes:
        """Replace the backup codes (sudo); the new ones are shown only in this answer.

        `POST /v1/auth/mfa/backup-codes/regenerate` (reference: auth-regenerate_backup_codes.html)"""
        return cast(
            "BackupCodes", self._core.op("auth-regenerate_backup_codes", {}, {}, None, "json")
        )

    def email_enroll(self) -> EnrollmentStarted:
        """Start adding the account's email address as a factor: a code is emailed.

        `POST /v1/auth/mfa/email/enroll` (reference: auth-email_enroll.html)"""
        return cast("EnrollmentStarted", self._core.op("auth-email_enroll", {}, {}, None, "json"))

    def email_verify(self, body: CodeIn) -> Factor:
        """Confirm the email factor with the emailed code.

        `POST /v1/auth/mfa/email/verify` (reference: auth-email_verify.html)"""
        return cast("Factor", self._core.op("auth-email_verify", {}, {}, body, "json"))

    def list_factors(self) -> FactorList:
        """The account's confirmed second factors and how many backup codes are left.

        `GET /v1/auth/mfa/factors` (reference: auth-list_factors.html)"""
        return cast("FactorList", self._core.op("auth-list_factors", {}, {}, None, "json"))

    def remove_factor(self, id: str) -> None:
        """Remove a second factor (sudo). Removing the last one also drops the backup codes.

        `POST /v1/auth/mfa/factors/{id}/remove` (reference: auth-remove_factor.html)"""
        return cast("None", self._core.op("auth-remove_factor", {"id": id}, {}, None, "none"))

    def sms_enroll(self, body: SmsEnroll) -> EnrollmentStarted:
        """Start adding a phone as a factor: a code is texted to it.

        `POST /v1/auth/mfa/sms/enroll` (reference: auth-sms_enroll.html)"""
        return cast("EnrollmentStarted", self._core.op("auth-sms_enroll", {}, {}, body, "json"))

    def sms_verify(self, body: CodeIn) -> Factor:
        """Confirm the phone factor with the texted code.

        `POST /v1/auth/mfa/sms/verify` (reference: auth-sms_verify.html)"""
        return cast("Factor", self._core.op("auth-sms_verify", {}, {}, body, "json"))

    def totp_enroll_begin(self) -> TotpEnrollment:
        """Start adding an authenticator app: the secret, its otpauth URI and a QR code (SVG).

        `POST /v1/auth/mfa/totp/enroll/begin` (reference: auth-totp_enroll_begin.html)"""
        return cast("TotpEnrollment", self._core.op("auth-totp_enroll_begin", {}, {}, None, "json"))

    def totp_enroll_finish(self, body: TotpFinish) -> Factor:
        """Confirm the authenticator app with a current code.

        `POST /v1/auth/mfa/totp/enroll/finish` (reference: auth-totp_enroll_finish.html)"""
        return cast("Factor", self._core.op("auth-totp_enroll_finish", {}, {}, body, "json"))

    def webauthn_register_begin(self) -> WebauthnRegisterBegin:
        """Start a passkey registration: options for navigator.credentials.create().

        `POST /v1/auth/mfa/webauthn/register/begin` (reference: auth-webauthn_register_begin.html)"""
        return cast(
            "WebauthnRegisterBegin",
            self._core.op("auth-webauthn_register_begin", {}, {}, None, "json"),
        )

    def webauthn_register_finish(self, body: WebauthnRegisterFinish) -> Factor:
        """Finish the passkey registration; the passkey becomes a confirmed factor.

        `POST /v1/auth/mfa/webauthn/register/finish` (reference: auth-webauthn_register_finish.html)"""
        return cast("Factor", self._core.op("auth-webauthn_register_finish", {}, {}, body, "json"))

    def list_providers(self) -> ProviderList:
        """The OAuth and OpenID Connect providers this server offers for sign-in.

        `GET /v1/auth/oauth/providers` (reference: auth-list_providers.html)"""
        return cast("ProviderList", self._core.op("auth-list_providers", {}, {}, None, "json"))

    def start_oauth(self, provider: str) -> None:
        """Redirect to the provider's consent page (with state and PKCE).

        `GET /v1/auth/oauth/{provider}` (reference: auth-start_oauth.html)"""
        return cast(
            "None", self._core.op("auth-start_oauth", {"provider": provider}, {}, None, "none")
        )

    def oauth_callback(
        self,
        provider: str,
        *,
        code: str | None = None,
        state: str | None = None,
        error: str | None = None,
    ) -> LoginResult:
        """Finish the provider's redirect: sign in (linking or creating the account) or answer

        `GET /v1/auth/oauth/{provider}/callback` (reference: auth-oauth_callback.html)"""
        return cast(
            "LoginResult",
            self._core.op(
                "auth-oauth_callback",
                {"provider": provider},
                {"code": code, "state": state, "error": error},
                None,
                "json",
            ),
        )

    def send_phone_code(self, body: PhoneIn) -> CodeSentTo:
        """Text a 6-digit code to a phone number, to verify it.

        `POST /v1/auth/phone/send-code` (reference: auth-send_phone_code.html)"""
        return cast("CodeSentTo", self._core.op("auth-send_phone_code", {}, {}, body, "json"))

    def verify_phone(self, body: PhoneCode) -> User:
        """Verify and save a first phone number with the code just texted to it.

        `POST /v1/auth/phone/verify` (reference: auth-verify_phone.html)"""
        return cast("User", self._core.op("auth-verify_phone", {}, {}, body, "json"))

    def complete_recovery(self, body: RecoveryComplete) -> Message:
        """After the cooldown, remove every MFA factor and sign out every session.

        `POST /v1/auth/recovery/complete` (reference: auth-complete_recovery.html)"""
        return cast("Message", self._core.op("auth-complete_recovery", {}, {}, body, "json"))

    def request_recovery(self, body: RecoveryRequest) -> Message:
        """Email a recovery token (usable after the cooldown); the same answer for every address.

        `POST /v1/auth/recovery/request` (reference: auth-request_recovery.html)"""
        return cast("Message", self._core.op("auth-request_recovery", {}, {}, body, "json"))

    def refresh(self) -> LoginResult:
        """Rotate the refresh token; reusing an old one revokes the whole session.

        `POST /v1/auth/refresh` (reference: auth-refresh.html)"""
        return cast("LoginResult", self._core.op("auth-refresh", {}, {}, None, "json"))

    def reset_password(self, body: ResetPasswordRequest) -> Message:
        """Set a new password with the emailed token; every session of the account is signed out.

        `POST /v1/auth/reset-password` (reference: auth-reset_password.html)"""
        return cast("Message", self._core.op("auth-reset_password", {}, {}, body, "json"))

    def set_password(self, body: SetPasswordRequest) -> Message:
        """Give a password to an account that has none (one created by OAuth or magic link).

        `POST /v1/auth/set-password` (reference: auth-set_password.html)"""
        return cast("Message", self._core.op("auth-set_password", {}, {}, body, "json"))

    def signup(self, body: SignupRequest) -> Message:
        """Create an account and its personal org, and email a verification link.

        `POST /v1/auth/signup` (reference: auth-signup.html)"""
        return cast("Message", self._core.op("auth-signup", {}, {}, body, "json"))

    def sudo(self, body: SudoRequest) -> SudoGrantOut:
        """Re-verify the password and mint a 5-minute sudo-grant cookie for destructive routes.

        `POST /v1/auth/sudo` (reference: auth-sudo.html)"""
        return cast("SudoGrantOut", self._core.op("auth-sudo", {}, {}, body, "json"))

    def verify_email(self, *, token: str) -> VerifyEmailResult:
        """Confirm an email address with the emailed token.

        `GET /v1/auth/verify-email` (reference: auth-verify_email.html)"""
        return cast(
            "VerifyEmailResult",
            self._core.op("auth-verify_email", {}, {"token": token}, None, "json"),
        )


class BaseImagesApi:
    """Operations tagged `base_images`."""

    def __init__(self, core: SyncCore) -> None:
        self._core = core

    def list_base_images(
        self, *, family: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> Page_BaseImageOut_:
        """The org's images and the platform's, every version, newest first.

        `GET /v1/base-images` (reference: base_images-list_base_images.html)"""
        return cast(
            "Page_BaseImageOut_",
            self._core.op(
                "base_images-list_base_images",
                {},
                {"family": family, "limit": limit, "cursor": cursor},
                None,
                "json",
            ),
        )

    def get_default_image(self) -> BaseImageOut:
        """The image new instances get when they name none: the `default` family's current version.

        `GET /v1/base-images/default` (reference: base_images-get_default_image.html)"""
        return cast(
            "BaseImageOut", self._core.op("base_images-get_default_image", {}, {}, None, "json")
        )

    def get_family_current(self, family: str) -> BaseImageOut:
        """The family's current version (the org's family of that name first, then the platform's).

        `GET /v1/base-images/family/{family}` (reference: base_images-get_family_current.html)"""
        return cast(
            "BaseImageOut",
            self._core.op("base_images-get_family_current", {"family": family}, {}, None, "json"),
        )

    def rollback_family(self, family: str) -> BaseImageOut:
        """Make the family's previous promoted version current again (running instances keep theirs).

        `POST /v1/base-images/family/{family}/rollback` (reference: base_images-rollback_family.html)"""
        return cast(
            "BaseImageOut",
            self._core.op("base_images-rollback_family", {"family": family}, {}, None, "json"),
        )

    def list_family_versions(
        self, family: str, *, limit: int | None = None, cursor: str | None = None
    ) -> Page_BaseImageOut_:
        """Every version of the family, newest first.

        `GET /v1/base-images/family/{family}/versions` (reference: base_images-list_family_versions.html)"""
        return cast(
            "Page_BaseImageOut_",
            self._core.op(
                "base_images-list_family_versions",
                {"family": family},
                {"limit": limit, "cursor": cursor},
                None,
                "json",
            ),
        )

    def get_base_image(self, id: str) -> BaseImageOut:
        """One image version, with its build logs.

        `GET /v1/base-images/{id}` (reference: base_images-get_base_image.html)"""
        return cast(
            "BaseImageOut",
            self._core.op("base_images-get_base_image", {"id": id}, {}, None, "json"),
        )

    def delete_base_image(self, id: str) -> None:
        """Delete a version that is neither current nor used by an instance nor building.

        `DELETE /v1/base-images/{id}` (reference: base_images-delete_base_image.html)"""
        return cast(
            "None", self._core.op("base_images-delete_base_image", {"id": id}, {}, None, "none")
        )

    def abort_image(self, body: ImageRef) -> BaseImageOut:
        """Cancel a build; its build sandbox and partial layer are cleaned up.

        `POST /v1/images/abort` (reference: base_images-abort_image.html)"""
        return cast("BaseImageOut", self._core.op("base_images-abort_image", {}, {}, body, "json"))

    def prepare_image(self, body: ImagePrepare) -> BaseImageOut:
        """Build a new version of a family in the background (poll it for progress and logs).

        `POST /v1/images/prepare` (reference: base_images-prepare_image.html)"""
        return cast(
            "BaseImageOut", self._core.op("base_images-prepare_image", {}, {}, body, "json")
        )

    def promote_image(self, body: ImageRef) -> BaseImageOut:
        """Make a ready version its family's current one; new instances get it.

        `POST /v1/images/promote` (reference: base_images-promote_image.html)"""
        return cast(
            "BaseImageOut", self._core.op("base_images-promote_image", {}, {}, body, "json")
        )


class CheckpointsApi:
    """Operations tagged `checkpoints`."""

    def __init__(self, core: SyncCore) -> None:
        self._core = core

    def list_checkpoints(
        self, id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> Page_CheckpointOut_:
        """The instance's checkpoints, newest first; `parent_id` links them into a tree.

        `GET /v1/instances/{id}/checkpoints` (reference: checkpoints-list_checkpoints.html)"""
        return cast(
            "Page_CheckpointOut_",
            self._core.op(
                "checkpoints-list_checkpoints",
                {"id": id},
                {"limit": limit, "cursor": cursor},
                None,
                "json",
            ),
        )

    def create_checkpoint(self, id: str, body: CheckpointCreate) -> CheckpointOut:
        """Capture the instance's filesystem now; its processes pause only for the capture.

        `POST /v1/instances/{id}/checkpoints` (reference: checkpoints-create_checkpoint.html)"""
        return cast(
            "CheckpointOut",
            self._core.op("checkpoints-create_checkpoint", {"id": id}, {}, body, "json"),
        )

    def rollback(self, id: str, body: RollbackRequest) -> RollbackOut:
        """Make the filesystem exactly the checkpoint's (processes restart; the state before is kept).

        `POST /v1/instances/{id}/rollback` (reference: checkpoints-rollback.html)"""
        return cast(
            "RollbackOut", self._core.op("checkpoints-rollback", {"id": id}, {}, body, "json")
        )

    def get_checkpoint_route(self, instance_id: str, checkpoint_id: str) -> CheckpointOut:
        """One checkpoint.

        `GET /v1/instances/{instance_id}/checkpoints/{checkpoint_id}` (reference: checkpoints-get_checkpoint_route.html)"""
        return cast(
            "CheckpointOut",
            self._core.op(
                "checkpoints-get_checkpoint_route",
                {"instance_id": instance_id, "checkpoint_id": checkpoint_id},
                {},
                None,
                "json",
            ),
        )

    def delete_checkpoint(self, instance_id: str, checkpoint_id: str) -> None:
        """Delete a checkpoint; its children hang from its parent, and its space is reclaimed.

        `DELETE /v1/instances/{instance_id}/checkpoints/{checkpoint_id}` (reference: checkpoints-delete_checkpoint.html)"""
        return cast(
            "None",
            self._core.op(
                "checkpoints-delete_checkpoint",
                {"instance_id": instance_id, "checkpoint_id": checkpoint_id},
                {},
                None,
                "none",
            ),
        )


class ComputeServersApi:
    """Operations tagged `compute_servers`."""

    def __init__(self, core: SyncCore) -> None:
        self._core = core

    def list_servers(self) -> Page_ServerOut_:
        """Every compute server with capacity, status and heartbeat freshness.

        `GET /v1/admin/servers` (reference: compute_servers-list_servers.html)"""
        return cast(
            "Page_ServerOut_", self._core.op("compute_servers-list_servers", {}, {}, None, "json")
        )

    def get_server(self, id: str) -> ServerOut:
        """One compute server.

        `GET /v1/admin/servers/{id}` (reference: compute_servers-get_server.html)"""
        return cast(
            "ServerOut", self._core.op("compute_servers-get_server", {"id": id}, {}, None, "json")
        )

    def drain_server(self, id: str) -> ServerOut:
        """Stop placing new instances here; instances already on it keep running.

        `POST /v1/admin/servers/{id}/drain` (reference: compute_servers-drain_server.html)"""
        return cast(
            "ServerOut", self._core.op("compute_servers-drain_server", {"id": id}, {}, None, "json")
        )

    def server_metrics(self, id: str) -> Metrics:
        """The server's last reported capacity and its instances by status.

        `GET /v1/admin/servers/{id}/metrics` (reference: compute_servers-server_metrics.html)"""
        return cast(
            "Metrics", self._core.op("compute_servers-server_metrics", {"id": id}, {}, None, "json")
        )

    def set_server_status(self, id: str, body: ServerStatusUpdate) -> ServerOut:
        """Set a server active, draining or disabled.

        `PATCH /v1/admin/servers/{id}/status` (reference: compute_servers-set_server_status.html)"""
        return cast(
            "ServerOut",
            self._core.op("compute_servers-set_server_status", {"id": id}, {}, body, "json"),
        )

    def server_vm_storage(self, id: str) -> dict[str, Any]:
        """Disk used per instance on this server, its layers (what stacks on each) and free space.

        `GET /v1/admin/servers/{id}/vm-storage` (reference: compute_servers-server_vm_storage.html)"""
        return cast(
            "dict[str, Any]",
            self._core.op("compute_servers-server_vm_storage", {"id": id}, {}, None, "json"),
        )


class EventsApi:
    """Operations tagged `events`."""

    def __init__(self, core: SyncCore) -> None:
        self._core = core

    def list_events(
        self,
        *,
        type: str | None = None,
        resource_type: str | None = None,
        resource_id: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page_EventOut_:
        """The caller's org's events, newest first.

        `GET /v1/events` (reference: events-list_events.html)"""
        return cast(
            "Page_EventOut_",
            self._core.op(
                "events-list_events",
                {},
                {
                    "type": type,
                    "resource_type": resource_type,
                    "resource_id": resource_id,
                    "limit": limit,
                    "cursor": cursor,
                },
                None,
                "json",
            ),
        )

    def stream_events(
        self,
        *,
        type: str | None = None,
        resource_type: str | None = None,
        resource_id: str | None = None,
    ) -> Iterator[Event]:
        """SSE stream of the caller's org's events as they commit (event: the type, data: the event).

        `GET /v1/events/stream` (reference: events-stream_events.html)"""
        return self._core.stream_op(
            "events-stream_events",
            {},
            {"type": type, "resource_type": resource_type, "resource_id": resource_id},
            None,
            "stream",
        )

    def get_event(self, id: str) -> EventOut:
        """One event of the caller's org.

        `GET /v1/events/{id}` (reference: events-get_event.html)"""
        return cast("EventOut", self._core.op("events-get_event", {"id": id}, {}, None, "json"))


class ExecApi:
    """Operations tagged `exec`."""

    def __init__(self, core: SyncCore) -> None:
        self._core = core

    def list_execs(self, id: str, *, limit: int | None = None) -> Page_ExecRecordOut_:
        """Recent execs in this instance: command, status, exit code and timings, newest first.

        `GET /v1/instances/{id}/exec` (reference: exec-list_execs.html)"""
        return cast(
            "Page_ExecRecordOut_",
            self._core.op("exec-list_execs", {"id": id}, {"limit": limit}, None, "json"),
        )

    def run_command(self, id: str, body: ExecRequest) -> ExecResultOut:
        """Run a command to completion and return its exit code and output.

        `POST /v1/instances/{id}/exec` (reference: exec-run_command.html)"""
        return cast(
            "ExecResultOut", self._core.op("exec-run_command", {"id": id}, {}, body, "json")
        )

    def stream_command(self, id: str, body: ExecRequest) -> Iterator[Event]:
        """SSE stream of exec frames: `start` {exec_id, pid}, `stdout`/`stderr` {data}, then `exit` {exit_code, duration_ms} or `error`. A client that disconnects has its process killed.

        `POST /v1/instances/{id}/exec/stream` (reference: exec-stream_command.html)"""
        return self._core.stream_op("exec-stream_command", {"id": id}, {}, body, "stream")


class FilesApi:
    """Operations tagged `files`."""

    def __init__(self, core: SyncCore) -> None:
        self._core = core

    def read_file(
        self, id: str, *, path: str, offset: int | None = None, limit: int | None = None
    ) -> bytes:
        """A regular file's bytes, streamed; `offset` and `limit` read a range. A whole file over the server's read limit (or a range past it) is 400 `file_too_large`; a device, FIFO or socket is 400 `not_a_regular_file`.

        `GET /v1/instances/{id}/files` (reference: files-read_file.html)"""
        return cast(
            "bytes",
            self._core.op(
                "files-read_file",
                {"id": id},
                {"path": path, "offset": offset, "limit": limit},
                None,
                "bytes",
            ),
        )

    def write_file(self, id: str, body: FileWrite) -> FileEntry:
        """Write a file (UTF-8 text or base64 bytes), creating parent directories unless told not to.

        `POST /v1/instances/{id}/files` (reference: files-write_file.html)"""
        return cast("FileEntry", self._core.op("files-write_file", {"id": id}, {}, body, "json"))

    def edit_file(self, id: str, body: FileEdit) -> EditResultOut:
        """Replace exactly one occurrence of old_str (or all with replace_all); with zero or several matches nothing changes and the count is reported.

        `POST /v1/instances/{id}/files/edit` (reference: files-edit_file.html)"""
        return cast("EditResultOut", self._core.op("files-edit_file", {"id": id}, {}, body, "json"))

    def list_files(
        self, id: str, *, path: str | None = None, depth: int | None = None
    ) -> Page_FileEntry_:
        """Entries under a directory (to `depth` levels): name, path, type, size, mode, modified time.

        `GET /v1/instances/{id}/files/list` (reference: files-list_files.html)"""
        return cast(
            "Page_FileEntry_",
            self._core.op(
                "files-list_files", {"id": id}, {"path": path, "depth": depth}, None, "json"
            ),
        )

    def watch_files(
        self, id: str, *, path: str | None = None, recursive: bool | None = None
    ) -> Iterator[Event]:
        """Changes under a directory of the instance as server-sent events (inotify inside it).

        `GET /v1/instances/{id}/files/watch` (reference: files-watch_files.html)"""
        return self._core.stream_op(
            "files-watch_files", {"id": id}, {"path": path, "recursive": recursive}, None, "stream"
        )


class HealthApi:
    """Operations tagged `health`."""

    def __init__(self, core: SyncCore) -> None:
        self._core = core

    def health(self) -> HealthStatus:
        """Overall health: the readiness checks with their details.

        `GET /health` (reference: health-health.html)"""
        return cast("HealthStatus", self._core.op("health-health", {}, {}, None, "json"))

    def health_live(self) -> HealthStatus:
        """Cheapest possible probe — process is up.

        `GET /health/live` (reference: health-health_live.html)"""
        return cast("HealthStatus", self._core.op("health-health_live", {}, {}, None, "json"))

    def health_ready(self) -> HealthStatus:
        """Ready to serve: database reachable, migrations current, worker heartbeat fresh.

        `GET /health/ready` (reference: health-health_ready.html)"""
        return cast("HealthStatus", self._core.op("health-health_ready", {}, {}, None, "json"))

    def health_startup(self) -> HealthStatus:
        """Startup finished: migrations applied and background services launched.

        `GET /health/startup` (reference: health-health_startup.html)"""
        return cast("HealthStatus", self._core.op("health-health_startup", {}, {}, None, "json"))


class InstancesApi:
    """Operations tagged `instances`."""

    def __init__(self, core: SyncCore) -> None:
        self._core = core

    def list_instances(
        self,
        *,
        status: str | None = None,
        label: list[str] | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page_InstanceOut_:
        """The org's instances, newest first, filtered by status and labels.

        `GET /v1/instances` (reference: instances-list_instances.html)"""
        return cast(
            "Page_InstanceOut_",
            self._core.op(
                "instances-list_instances",
                {},
                {"status": status, "label": label, "limit": limit, "cursor": cursor},
                None,
                "json",
            ),
        )

    def create_instance_route(
        self, body: InstanceCreate, *, wait: bool | None = None
    ) -> InstanceOut:
        """Create an instance; it answers `provisioning` and becomes `running` when its agent answers (or, with `wait=true`, answers once it runs).

        `POST /v1/instances` (reference: instances-create_instance_route.html)"""
        return cast(
            "InstanceOut",
            self._core.op("instances-create_instance_route", {}, {"wait": wait}, body, "json"),
        )

    def get_instance_route(self, id: str) -> InstanceOut:
        """One instance.

        `GET /v1/instances/{id}` (reference: instances-get_instance_route.html)"""
        return cast(
            "InstanceOut",
            self._core.op("instances-get_instance_route", {"id": id}, {}, None, "json"),
        )

    def update_instance(self, id: str, body: InstanceUpdate) -> InstanceOut:
        """Rename an instance or change its labels, idle timeout or egress policy (`network`: a

        `PATCH /v1/instances/{id}` (reference: instances-update_instance.html)"""
        return cast(
            "InstanceOut", self._core.op("instances-update_instance", {"id": id}, {}, body, "json")
        )

    def delete_instance(self, id: str) -> InstanceOut:
        """Delete an instance: every process, mount, cgroup and byte of its storage goes.

        `DELETE /v1/instances/{id}` (reference: instances-delete_instance.html)"""
        return cast(
            "InstanceOut", self._core.op("instances-delete_instance", {"id": id}, {}, None, "json")
        )

    def fork_instance(self, id: str, body: ForkRequest, *, wait: bool | None = None) -> ForkOut:
        """Fork the instance into `count` new ones with its filesystem as it is now.

        `POST /v1/instances/{id}/fork` (reference: instances-fork_instance.html)"""
        return cast(
            "ForkOut",
            self._core.op("instances-fork_instance", {"id": id}, {"wait": wait}, body, "json"),
        )


class InternalApi:
    """Operations tagged `internal`."""

    def __init__(self, core: SyncCore) -> None:
        self._core = core

    def register_server(self, body: RegisterRequest) -> RegisterResponse:
        """A node announces itself (again): its URL, secret, driver and capacity.

        `POST /v1/internal/servers/register` (reference: internal-register_server.html)"""
        return cast(
            "RegisterResponse", self._core.op("internal-register_server", {}, {}, body, "json")
        )

    def server_heartbeat(self, id: str, body: HeartbeatRequest) -> HeartbeatResponse:
        """A node's periodic report: capacity and the state of every instance it holds.

        `POST /v1/internal/servers/{id}/heartbeat` (reference: internal-server_heartbeat.html)"""
        return cast(
            "HeartbeatResponse",
            self._core.op("internal-server_heartbeat", {"id": id}, {}, body, "json"),
        )


class InvitationsApi:
    """Operations tagged `invitations`."""

    def __init__(self, core: SyncCore) -> None:
        self._core = core

    def get_invitation(self, token: str) -> InvitationPreview:
        """What an emailed invitation offers: the org, the role, who sent it and when it expires.

        `GET /v1/auth/invitations/{token}` (reference: invitations-get_invitation.html)"""
        return cast(
            "InvitationPreview",
            self._core.op("invitations-get_invitation", {"token": token}, {}, None, "json"),
        )

    def accept_invitation(self, token: str) -> Org:
        """Join the org an invitation names; your account's email must be the invited address.

        `POST /v1/auth/invitations/{token}/accept` (reference: invitations-accept_invitation.html)"""
        return cast(
            "Org",
            self._core.op("invitations-accept_invitation", {"token": token}, {}, None, "json"),
        )

    def list_invitations(
        self, org_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> Page_Invitation_:
        """The org's pending invitations, newest first (admins).

        `GET /v1/orgs/{org_id}/invitations` (reference: invitations-list_invitations.html)"""
        return cast(
            "Page_Invitation_",
            self._core.op(
                "invitations-list_invitations",
                {"org_id": org_id},
                {"limit": limit, "cursor": cursor},
                None,
                "json",
            ),
        )

    def create_invitation(self, org_id: str, body: InvitationCreate) -> Invitation:
        """Invite someone by email to join the org with a role (admins); the link is emailed.

        `POST /v1/orgs/{org_id}/invitations` (reference: invitations-create_invitation.html)"""
        return cast(
            "Invitation",
            self._core.op("invitations-create_invitation", {"org_id": org_id}, {}, body, "json"),
        )

    def revoke_invitation(self, org_id: str, inv_id: str) -> None:
        """Revoke an invitation; its link stops working (admins).

        `DELETE /v1/orgs/{org_id}/invitations/{inv_id}` (reference: invitations-revoke_invitation.html)"""
        return cast(
            "None",
            self._core.op(
                "invitations-revoke_invitation",
                {"org_id": org_id, "inv_id": inv_id},
                {},
                None,
                "none",
            ),
        )


class LspApi:
    """Operations tagged `lsp`."""

    def __init__(self, core: SyncCore) -> None:
        self._core = core

    def list_language_servers(self, id: str) -> Page_LanguageServer_:
        """The language servers the instance's image offers (found on its PATH), and those running.

        `GET /v1/instances/{id}/lsp` (reference: lsp-list_language_servers.html)"""
        return cast(
            "Page_LanguageServer_",
            self._core.op("lsp-list_language_servers", {"id": id}, {}, None, "json"),
        )


class MembersApi:
    """Operations tagged `members`."""

    def __init__(self, core: SyncCore) -> None:
        self._core = core

    def list_members(
        self, org_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> Page_Member_:
        """The org's members and their roles, newest first.

        `GET /v1/orgs/{org_id}/members` (reference: members-list_members.html)"""
        return cast(
            "Page_Member_",
            self._core.op(
                "members-list_members",
                {"org_id": org_id},
                {"limit": limit, "cursor": cursor},
                None,
                "json",
            ),
        )

    def update_member(self, org_id: str, user_id: str, body: MemberUpdate) -> Member:
        """Change a member's role (admins; only owners grant or remove the owner role).

        `PATCH /v1/orgs/{org_id}/members/{user_id}` (reference: members-update_member.html)"""
        return cast(
            "Member",
            self._core.op(
                "members-update_member", {"org_id": org_id, "user_id": user_id}, {}, body, "json"
            ),
        )

    def remove_member(self, org_id: str, user_id: str) -> None:
        """Remove a member (admins), or leave the org by naming yourself; the last owner stays.

        `DELETE /v1/orgs/{org_id}/members/{user_id}` (reference: members-remove_member.html)"""
        return cast(
            "None",
            self._core.op(
                "members-remove_member", {"org_id": org_id, "user_id": user_id}, {}, None, "none"
            ),
        )


class NotificationsApi:
    """Operations tagged `notifications`."""

    def __init__(self, core: SyncCore) -> None:
        self._core = core

    def list_notifications(
        self, *, unread: bool | None = None, limit: int | None = None, cursor: str | None = None
    ) -> Page_NotificationOut_:
        """Your notices, newest first.

        `GET /v1/notifications` (reference: notifications-list_notifications.html)"""
        return cast(
            "Page_NotificationOut_",
            self._core.op(
                "notifications-list_notifications",
                {},
                {"unread": unread, "limit": limit, "cursor": cursor},
                None,
                "json",
            ),
        )

    def read_all_notifications(self) -> ReadAllResult:
        """Mark every one of your notices read.

        `POST /v1/notifications/read-all` (reference: notifications-read_all_notifications.html)"""
        return cast(
            "ReadAllResult",
            self._core.op("notifications-read_all_notifications", {}, {}, None, "json"),
        )

    def get_notification_settings(self) -> NotificationSettings:
        """Which categories reach you in the app and by email.

        `GET /v1/notifications/settings` (reference: notifications-get_notification_settings.html)"""
        return cast(
            "NotificationSettings",
            self._core.op("notifications-get_notification_settings", {}, {}, None, "json"),
        )

    def update_notification_settings(
        self, body: NotificationSettingsUpdate
    ) -> NotificationSettings:
        """Choose the channels of some categories (security stays on).

        `PUT /v1/notifications/settings` (reference: notifications-update_notification_settings.html)"""
        return cast(
            "NotificationSettings",
            self._core.op("notifications-update_notification_settings", {}, {}, body, "json"),
        )

    def stream_notifications(self) -> Iterator[Event]:
        """SSE stream of your new notices (event: `notification`, data: the notice).

        `GET /v1/notifications/stream` (reference: notifications-stream_notifications.html)"""
        return self._core.stream_op("notifications-stream_notifications", {}, {}, None, "stream")

    def read_notification(self, id: str) -> NotificationOut:
        """Mark one notice read.

        `POST /v1/notifications/{id}/read` (reference: notifications-read_notification.html)"""
        return cast(
            "NotificationOut",
            self._core.op("notifications-read_notification", {"id": id}, {}, None, "json"),
        )


class OrgsApi:
    """Operations tagged `orgs`."""

    def __init__(self, core: SyncCore) -> None:
        self._core = core

    def list_orgs(self, *, limit: int | None = None, cursor: str | None = None) -> Page_Org_:
        """The orgs you belong to, with your role in each (an API key sees only its own org).

        `GET /v1/orgs` (reference: orgs-list_orgs.html)"""
        return cast(
            "Page_Org_",
            self._core.op("orgs-list_orgs", {}, {"limit": limit, "cursor": cursor}, None, "json"),
        )

    def create_org(self, body: OrgCreate) -> Org:
        """Create a team org; you become its owner (signed-in users only).

        `POST /v1/orgs` (reference: orgs-create_org.html)"""
        return cast("Org", self._core.op("orgs-create_org", {}, {}, body, "json"))

    def list_ip_allowlist(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> Page_AllowlistEntry_:
        """The acting org's IP allowlist (admins); an empty list allows every address.

        `GET /v1/orgs/me/ip-allowlist` (reference: orgs-list_ip_allowlist.html)"""
        return cast(
            "Page_AllowlistEntry_",
            self._core.op(
                "orgs-list_ip_allowlist", {}, {"limit": limit, "cursor": cursor}, None, "json"
            ),
        )

    def add_ip_allowlist_entry(self, body: AllowlistEntryCreate) -> AllowlistEntry:
        """Allow an IPv4 or IPv6 range for the acting org (admins); refuses to lock you out.

        `POST /v1/orgs/me/ip-allowlist` (reference: orgs-add_ip_allowlist_entry.html)"""
        return cast(
            "AllowlistEntry", self._core.op("orgs-add_ip_allowlist_entry", {}, {}, body, "json")
        )

    def remove_ip_allowlist_entry(
        self, entry_id: str, *, confirm_lockout: bool | None = None
    ) -> None:
        """Remove an entry from the acting org's IP allowlist (admins).

        `DELETE /v1/orgs/me/ip-allowlist/{entry_id}` (reference: orgs-remove_ip_allowlist_entry.html)"""
        return cast(
            "None",
            self._core.op(
                "orgs-remove_ip_allowlist_entry",
                {"entry_id": entry_id},
                {"confirm_lockout": confirm_lockout},
                None,
                "none",
            ),
        )

    def get_org(self, id: str) -> Org:
        """One org you belong to, with your role in it.

        `GET /v1/orgs/{id}` (reference: orgs-get_org.html)"""
        return cast("Org", self._core.op("orgs-get_org", {"id": id}, {}, None, "json"))

    def update_org(self, id: str, body: OrgUpdate) -> Org:
        """Rename an org (admins and owners).

        `PATCH /v1/orgs/{id}` (reference: orgs-update_org.html)"""
        return cast("Org", self._core.op("orgs-update_org", {"id": id}, {}, body, "json"))

    def list_org_members(
        self, id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> Page_Member_:
        """The org's members and their roles, newest first.

        `GET /v1/orgs/{id}/members` (reference: orgs-list_org_members.html)"""
        return cast(
            "Page_Member_",
            self._core.op(
                "orgs-list_org_members",
                {"id": id},
                {"limit": limit, "cursor": cursor},
                None,
                "json",
            ),
        )


class PortForwardsApi:
    """Operations tagged `port_forwards`."""

    def __init__(self, core: SyncCore) -> None:
        self._core = core

    def list_port_forwards(self, id: str) -> Page_PortForwardOut_:
        """The instance's port forwards, by port.

        `GET /v1/instances/{id}/port-forwards` (reference: port_forwards-list_port_forwards.html)"""
        return cast(
            "Page_PortForwardOut_",
            self._core.op("port_forwards-list_port_forwards", {"id": id}, {}, None, "json"),
        )

    def create_port_forward(self, id: str, body: PortForwardCreate) -> PortForwardOut:
        """Forward a port of the instance: an HTTP preview URL or a TCP tunnel; a port once only.

        `POST /v1/instances/{id}/port-forwards` (reference: port_forwards-create_port_forward.html)"""
        return cast(
            "PortForwardOut",
            self._core.op("port_forwards-create_port_forward", {"id": id}, {}, body, "json"),
        )

    def delete_port_forward(self, instance_id: str, forward_id: str) -> None:
        """Stop forwarding the port; its preview URL and share links stop working at once.

        `DELETE /v1/instances/{instance_id}/port-forwards/{forward_id}` (reference: port_forwards-delete_port_forward.html)"""
        return cast(
            "None",
            self._core.op(
                "port_forwards-delete_port_forward",
                {"instance_id": instance_id, "forward_id": forward_id},
                {},
                None,
                "none",
            ),
        )

    def share_port_forward(self, instance_id: str, forward_id: str) -> ShareOut:
        """A short-lived link that opens a private preview for whoever has it (that port only).

        `POST /v1/instances/{instance_id}/port-forwards/{forward_id}/share` (reference: port_forwards-share_port_forward.html)"""
        return cast(
            "ShareOut",
            self._core.op(
                "port_forwards-share_port_forward",
                {"instance_id": instance_id, "forward_id": forward_id},
                {},
                None,
                "json",
            ),
        )


class ProfilesApi:
    """Operations tagged `profiles`."""

    def __init__(self, core: SyncCore) -> None:
        self._core = core

    def list_profiles(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> Page_ProfileOut_:
        """The org's profiles, newest first.

        `GET /v1/profiles` (reference: profiles-list_profiles.html)"""
        return cast(
            "Page_ProfileOut_",
            self._core.op(
                "profiles-list_profiles", {}, {"limit": limit, "cursor": cursor}, None, "json"
            ),
        )

    def create_profile(self, body: ProfileCreate) -> ProfileOut:
        """A named preset to create instances from: image, size, env, idle timeout, setup commands.

        `POST /v1/profiles` (reference: profiles-create_profile.html)"""
        return cast("ProfileOut", self._core.op("profiles-create_profile", {}, {}, body, "json"))

    def get_profile_route(self, id: str) -> ProfileOut:
        """One profile.

        `GET /v1/profiles/{id}` (reference: profiles-get_profile_route.html)"""
        return cast(
            "ProfileOut", self._core.op("profiles-get_profile_route", {"id": id}, {}, None, "json")
        )

    def update_profile(self, id: str, body: ProfileUpdate) -> ProfileOut:
        """Change a profile; instances already created keep their settings.

        `PATCH /v1/profiles/{id}` (reference: profiles-update_profile.html)"""
        return cast(
            "ProfileOut", self._core.op("profiles-update_profile", {"id": id}, {}, body, "json")
        )

    def delete_profile(self, id: str) -> None:
        """Delete a profile; instances created from it are unaffected.

        `DELETE /v1/profiles/{id}` (reference: profiles-delete_profile.html)"""
        return cast("None", self._core.op("profiles-delete_profile", {"id": id}, {}, None, "none"))


class SessionsApi:
    """Operations tagged `sessions`."""

    def __init__(self, core: SyncCore) -> None:
        self._core = core

    def list_sessions(self) -> Page_Session_:
        """This user's active sessions, newest first; `current` marks the caller's own.

        `GET /v1/auth/me/sessions` (reference: sessions-list_sessions.html)"""
        return cast("Page_Session_", self._core.op("sessions-list_sessions", {}, {}, None, "json"))

    def revoke_other_sessions(self) -> RevokedCount:
        """Sign out every device except the caller's. With an API key there is no current session,

        `POST /v1/auth/me/sessions/revoke-others` (reference: sessions-revoke_other_sessions.html)"""
        return cast(
            "RevokedCount", self._core.op("sessions-revoke_other_sessions", {}, {}, None, "json")
        )

    def revoke_session(self, id: str) -> None:
        """Sign out one device. Revoking the current session signs this caller out too.

        `DELETE /v1/auth/me/sessions/{id}` (reference: sessions-revoke_session.html)"""
        return cast("None", self._core.op("sessions-revoke_session", {"id": id}, {}, None, "none"))


class SnapshotsApi:
    """Operations tagged `snapshots`."""

    def __init__(self, core: SyncCore) -> None:
        self._core = core

    def list_snapshots(
        self, id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> Page_SnapshotOut_:
        """The instance's snapshots, newest first.

        `GET /v1/instances/{id}/snapshots` (reference: snapshots-list_snapshots.html)"""
        return cast(
            "Page_SnapshotOut_",
            self._core.op(
                "snapshots-list_snapshots",
                {"id": id},
                {"limit": limit, "cursor": cursor},
                None,
                "json",
            ),
        )

    def create_snapshot(self, id: str, body: SnapshotCreate) -> SnapshotOut:
        """Capture the instance as a named snapshot that outlives it.

        `POST /v1/instances/{id}/snapshots` (reference: snapshots-create_snapshot.html)"""
        return cast(
            "SnapshotOut", self._core.op("snapshots-create_snapshot", {"id": id}, {}, body, "json")
        )

    def get_snapshot(self, id: str, snapshot_id: str) -> SnapshotOut:
        """One snapshot.

        `GET /v1/instances/{id}/snapshots/{snapshot_id}` (reference: snapshots-get_snapshot.html)"""
        return cast(
            "SnapshotOut",
            self._core.op(
                "snapshots-get_snapshot", {"id": id, "snapshot_id": snapshot_id}, {}, None, "json"
            ),
        )

    def delete_snapshot(self, id: str, snapshot_id: str) -> None:
        """Delete a snapshot; refused while an image or instance depends on it.

        `DELETE /v1/instances/{id}/snapshots/{snapshot_id}` (reference: snapshots-delete_snapshot.html)"""
        return cast(
            "None",
            self._core.op(
                "snapshots-delete_snapshot",
                {"id": id, "snapshot_id": snapshot_id},
                {},
                None,
                "none",
            ),
        )

    def restore_snapshot(self, id: str, snapshot_id: str, body: RestoreRequest) -> RestoreOut:
        """Restore into this instance, or with `new_instance` into a new one.

        `POST /v1/instances/{id}/snapshots/{snapshot_id}/restore` (reference: snapshots-restore_snapshot.html)"""
        return cast(
            "RestoreOut",
            self._core.op(
                "snapshots-restore_snapshot",
                {"id": id, "snapshot_id": snapshot_id},
                {},
                body,
                "json",
            ),
        )


class SshApi:
    """Operations tagged `ssh`."""

    def __init__(self, core: SyncCore) -> None:
        self._core = core

    def ssh_access(self, id: str) -> SshAccessOut:
        """How to ssh into the instance with one of your account's SSH keys (members with write access).

        `GET /v1/instances/{id}/ssh` (reference: ssh-ssh_access.html)"""
        return cast("SshAccessOut", self._core.op("ssh-ssh_access", {"id": id}, {}, None, "json"))


class UsersApi:
    """Operations tagged `users`."""

    def __init__(self, core: SyncCore) -> None:
        self._core = core

    def get_user(self, id: str) -> PublicUser:
        """A user's public profile, visible only to people who share an org with them.

        `GET /v1/users/{id}` (reference: users-get_user.html)"""
        return cast("PublicUser", self._core.op("users-get_user", {"id": id}, {}, None, "json"))


class VmsApi:
    """Operations tagged `vms`."""

    def __init__(self, core: SyncCore) -> None:
        self._core = core

    def get_vm_route(self, id: str) -> VmOut:
        """The instance's VM: state, server, pid, uptime, and live cpu, memory and disk use.

        `GET /v1/instances/{id}/vm` (reference: vms-get_vm_route.html)"""
        return cast("VmOut", self._core.op("vms-get_vm_route", {"id": id}, {}, None, "json"))

    def start_vm(self, id: str) -> InstanceOut:
        """Boot a stopped instance again; its disk is as it was.

        `POST /v1/instances/{id}/vm` (reference: vms-start_vm.html)"""
        return cast("InstanceOut", self._core.op("vms-start_vm", {"id": id}, {}, None, "json"))

    def stop_vm(self, id: str) -> InstanceOut:
        """Stop the instance's VM; the disk stays for the next boot.

        `DELETE /v1/instances/{id}/vm` (reference: vms-stop_vm.html)"""
        return cast("InstanceOut", self._core.op("vms-stop_vm", {"id": id}, {}, None, "json"))

    def flush_vm(self, id: str) -> VmOut:
        """Make every write durable on the server's disk; returns when it is.

        `POST /v1/instances/{id}/vm/flush` (reference: vms-flush_vm.html)"""
        return cast("VmOut", self._core.op("vms-flush_vm", {"id": id}, {}, None, "json"))

    def restart_vm(self, id: str) -> InstanceOut:
        """Restart the VM: every process restarts, files stay. Returns when it is running again.

        `POST /v1/instances/{id}/vm/restart` (reference: vms-restart_vm.html)"""
        return cast("InstanceOut", self._core.op("vms-restart_vm", {"id": id}, {}, None, "json"))


class WebhooksApi:
    """Operations tagged `webhooks`."""

    def __init__(self, core: SyncCore) -> None:
        self._core = core

    def list_webhook_dead_letters(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> Page_DeliveryOut_:
        """Deliveries whose retries ran out, newest first (staff).

        `GET /v1/admin/webhooks/dlq` (reference: webhooks-list_webhook_dead_letters.html)"""
        return cast(
            "Page_DeliveryOut_",
            self._core.op(
                "webhooks-list_webhook_dead_letters",
                {},
                {"limit": limit, "cursor": cursor},
                None,
                "json",
            ),
        )

    def reap_webhook_dead_letters(self, body: ReapRequest) -> ReapResult:
        """Delete dead letters older than `older_than` seconds (staff).

        `POST /v1/admin/webhooks/dlq/reap` (reference: webhooks-reap_webhook_dead_letters.html)"""
        return cast(
            "ReapResult", self._core.op("webhooks-reap_webhook_dead_letters", {}, {}, body, "json")
        )

    def retry_webhook_dead_letter(self, id: str) -> DeliveryOut:
        """Put a dead letter back on the schedule, first attempt now (staff).

        `POST /v1/admin/webhooks/dlq/{id}/retry` (reference: webhooks-retry_webhook_dead_letter.html)"""
        return cast(
            "DeliveryOut",
            self._core.op("webhooks-retry_webhook_dead_letter", {"id": id}, {}, None, "json"),
        )

    def process_webhook_queue(self) -> ProcessQueueResult:
        """Attempt every delivery that is due now, without waiting for the worker (staff).

        `POST /v1/admin/webhooks/process-queue` (reference: webhooks-process_webhook_queue.html)"""
        return cast(
            "ProcessQueueResult",
            self._core.op("webhooks-process_webhook_queue", {}, {}, None, "json"),
        )

    def list_webhooks(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> Page_Webhook_:
        """The org's webhook endpoints, newest first.

        `GET /v1/webhooks` (reference: webhooks-list_webhooks.html)"""
        return cast(
            "Page_Webhook_",
            self._core.op(
                "webhooks-list_webhooks", {}, {"limit": limit, "cursor": cursor}, None, "json"
            ),
        )

    def create_webhook(self, body: WebhookCreate) -> WebhookWithSecret:
        """Add an endpoint; its signing secret is in this answer only.

        `POST /v1/webhooks` (reference: webhooks-create_webhook.html)"""
        return cast(
            "WebhookWithSecret", self._core.op("webhooks-create_webhook", {}, {}, body, "json")
        )

    def get_webhook(self, id: str) -> Webhook:
        """One endpoint.

        `GET /v1/webhooks/{id}` (reference: webhooks-get_webhook.html)"""
        return cast("Webhook", self._core.op("webhooks-get_webhook", {"id": id}, {}, None, "json"))

    def update_webhook(self, id: str, body: WebhookUpdate) -> WebhookWithSecret:
        """Change an endpoint; `rotate_secret` answers with the new secret, once.

        `PATCH /v1/webhooks/{id}` (reference: webhooks-update_webhook.html)"""
        return cast(
            "WebhookWithSecret",
            self._core.op("webhooks-update_webhook", {"id": id}, {}, body, "json"),
        )

    def delete_webhook(self, id: str) -> None:
        """Delete an endpoint, its deliveries and their history.

        `DELETE /v1/webhooks/{id}` (reference: webhooks-delete_webhook.html)"""
        return cast("None", self._core.op("webhooks-delete_webhook", {"id": id}, {}, None, "none"))

    def list_webhook_deliveries(
        self, id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> Page_WebhookAttemptOut_:
        """Every attempt to reach the endpoint, newest first.

        `GET /v1/webhooks/{id}/deliveries` (reference: webhooks-list_webhook_deliveries.html)"""
        return cast(
            "Page_WebhookAttemptOut_",
            self._core.op(
                "webhooks-list_webhook_deliveries",
                {"id": id},
                {"limit": limit, "cursor": cursor},
                None,
                "json",
            ),
        )

    def test_webhook(self, id: str) -> WebhookAttemptOut:
        """Send `webhook.test` to the endpoint now and answer with the attempt.

        `POST /v1/webhooks/{id}/test` (reference: webhooks-test_webhook.html)"""
        return cast(
            "WebhookAttemptOut",
            self._core.op("webhooks-test_webhook", {"id": id}, {}, None, "json"),
        )


class Api:
    """Every operation of the API, one attribute per tag."""

    def __init__(self, core: SyncCore) -> None:
        self.account_ssh_keys = AccountSshKeysApi(core)
        self.api_keys = ApiKeysApi(core)
        self.audit = AuditApi(core)
        self.auth = AuthApi(core)
        self.base_images = BaseImagesApi(core)
        self.checkpoints = CheckpointsApi(core)
        self.compute_servers = ComputeServersApi(core)
        self.events = EventsApi(core)
        self.exec = ExecApi(core)
        self.files = FilesApi(core)
        self.health = HealthApi(core)
        self.instances = InstancesApi(core)
        self.internal = InternalApi(core)
        self.invitations = InvitationsApi(core)
        self.lsp = LspApi(core)
        self.members = MembersApi(core)
        self.notifications = NotificationsApi(core)
        self.orgs = OrgsApi(core)
        self.port_forwards = PortForwardsApi(core)
        self.profiles = ProfilesApi(core)
        self.sessions = SessionsApi(core)
        self.snapshots = SnapshotsApi(core)
        self.ssh = SshApi(core)
        self.users = UsersApi(core)
        self.vms = VmsApi(core)
        self.webhooks = WebhooksApi(core)


class AsyncAccountSshKeysApi:
    """Operations tagged `account_ssh_keys`."""

    def __init__(self, core: AsyncCore) -> None:
        self._core = core

    async def list_ssh_keys(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> Page_SshKeyOut_:
        """Your SSH public keys, newest first.

        `GET /v1/account/ssh-keys` (reference: account_ssh_keys-list_ssh_keys.html)"""
        return cast(
            "Page_SshKeyOut_",
            await self._core.op(
                "account_ssh_keys-list_ssh_keys",
                {},
                {"limit": limit, "cursor": cursor},
                None,
                "json",
            ),
        )

    async def add_ssh_key(self, body: SshKeyCreate) -> SshKeyOut:
        """Add an SSH public key (ed25519, ECDSA, or RSA of 2048 bits or more).

        `POST /v1/account/ssh-keys` (reference: account_ssh_keys-add_ssh_key.html)"""
        return cast(
            "SshKeyOut", await self._core.op("account_ssh_keys-add_ssh_key", {}, {}, body, "json")
        )

    async def delete_ssh_key(self, id: str) -> None:
        """Remove an SSH public key.

        `DELETE /v1/account/ssh-keys/{id}` (reference: account_ssh_keys-delete_ssh_key.html)"""
        return cast(
            "None",
            await self._core.op("account_ssh_keys-delete_ssh_key", {"id": id}, {}, None, "none"),
        )


class AsyncApiKeysApi:
    """Operations tagged `api_keys`."""

    def __init__(self, core: AsyncCore) -> None:
        self._core = core

    async def list_api_keys(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> Page_ApiKeyOut_:
        """The org's keys (never their secrets), newest first.

        `GET /v1/api-keys` (reference: api_keys-list_api_keys.html)"""
        return cast(
            "Page_ApiKeyOut_",
            await self._core.op(
                "api_keys-list_api_keys", {}, {"limit": limit, "cursor": cursor}, None, "json"
            ),
        )

    async def create_api_key(self, body: ApiKeyCreate) -> ApiKeyWithSecret:
        """Create a key for the current org; the secret is returned once.

        `POST /v1/api-keys` (reference: api_keys-create_api_key.html)"""
        return cast(
            "ApiKeyWithSecret", await self._core.op("api_keys-create_api_key", {}, {}, body, "json")
        )

    async def get_api_key(self, id: str) -> ApiKeyOut:
        """One key's metadata: scopes, expiry and last use.

        `GET /v1/api-keys/{id}` (reference: api_keys-get_api_key.html)"""
        return cast(
            "ApiKeyOut", await self._core.op("api_keys-get_api_key", {"id": id}, {}, None, "json")
        )

    async def revoke_api_key(self, id: str) -> None:
        """Revoke a key; it stops working at once.

        `DELETE /v1/api-keys/{id}` (reference: api_keys-revoke_api_key.html)"""
        return cast(
            "None", await self._core.op("api_keys-revoke_api_key", {"id": id}, {}, None, "none")
        )

    async def rotate_api_key(self, id: str) -> ApiKeyWithSecret:
        """Replace a key's secret (sudo): the old secret stops working, the new one is shown once.

        `POST /v1/api-keys/{id}/rotate` (reference: api_keys-rotate_api_key.html)"""
        return cast(
            "ApiKeyWithSecret",
            await self._core.op("api_keys-rotate_api_key", {"id": id}, {}, None, "json"),
        )


class AsyncAuditApi:
    """Operations tagged `audit`."""

    def __init__(self, core: AsyncCore) -> None:
        self._core = core

    async def list_audit_events(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page_AuditEventOut_:
        """Security events for the caller's org, newest first (org admins).

        `GET /v1/audit` (reference: audit-list_audit_events.html)"""
        return cast(
            "Page_AuditEventOut_",
            await self._core.op(
                "audit-list_audit_events",
                {},
                {
                    "actor": actor,
                    "action": action,
                    "target": target,
                    "since": since,
                    "until": until,
                    "limit": limit,
                    "cursor": cursor,
                },
                None,
                "json",
            ),
        )


class AsyncAuthApi:
    """Operations tagged `auth`."""

    def __init__(self, core: AsyncCore) -> None:
        self._core = core

    async def forgot_password(self, body: ForgotPasswordRequest) -> Message:
        """Email a password-reset link; the answer is the same whether or not the account exists.

        `POST /v1/auth/forgot-password` (reference: auth-forgot_password.html)"""
        return cast("Message", await self._core.op("auth-forgot_password", {}, {}, body, "json"))

    async def login(self, body: LoginRequest) -> LoginResult:
        """Sign in with email and password; sets the access, refresh and CSRF cookies.

        `POST /v1/auth/login` (reference: auth-login.html)"""
        return cast("LoginResult", await self._core.op("auth-login", {}, {}, body, "json"))

    async def consume_magic_link(self, *, token: str) -> LoginResult:
        """Use a sign-in link: sets the cookies, or answers with an MFA challenge.

        `GET /v1/auth/login/magic-link/consume` (reference: auth-consume_magic_link.html)"""
        return cast(
            "LoginResult",
            await self._core.op("auth-consume_magic_link", {}, {"token": token}, None, "json"),
        )

    async def request_magic_link(self, body: MagicLinkRequest) -> Message:
        """Email a sign-in link; the answer is the same for every address.

        `POST /v1/auth/login/magic-link/request` (reference: auth-request_magic_link.html)"""
        return cast("Message", await self._core.op("auth-request_magic_link", {}, {}, body, "json"))

    async def verify_login(self, body: MfaVerify) -> Any:
        """Finish a sign-in with a TOTP, SMS or email code, or a backup code; sets the cookies.

        `POST /v1/auth/login/mfa` (reference: auth-verify_login.html)"""
        return cast("Any", await self._core.op("auth-verify_login", {}, {}, body, "json"))

    async def send_login_code(self, body: SendCode) -> CodeSent:
        """Text or email a sign-in code for a pending challenge.

        `POST /v1/auth/login/mfa/send-code` (reference: auth-send_login_code.html)"""
        return cast("CodeSent", await self._core.op("auth-send_login_code", {}, {}, body, "json"))

    async def challenge_state(self, *, challenge_token: str) -> ChallengeState:
        """The factors and expiry of a pending sign-in challenge.

        `GET /v1/auth/login/mfa/state` (reference: auth-challenge_state.html)"""
        return cast(
            "ChallengeState",
            await self._core.op(
                "auth-challenge_state", {}, {"challenge_token": challenge_token}, None, "json"
            ),
        )

    async def webauthn_login_begin(self, body: ChallengeIn) -> WebauthnLoginBegin:
        """Options for navigator.credentials.get() for a pending sign-in challenge.

        `POST /v1/auth/login/mfa/webauthn/begin` (reference: auth-webauthn_login_begin.html)"""
        return cast(
            "WebauthnLoginBegin",
            await self._core.op("auth-webauthn_login_begin", {}, {}, body, "json"),
        )

    async def webauthn_login_finish(self, body: WebauthnLoginFinish) -> Any:
        """Finish a sign-in with a passkey; sets the cookies like the code-based factors.

        `POST /v1/auth/login/mfa/webauthn/finish` (reference: auth-webauthn_login_finish.html)"""
        return cast("Any", await self._core.op("auth-webauthn_login_finish", {}, {}, body, "json"))

    async def logout(self) -> None:
        """Sign out this browser: revoke its session and clear the cookies.

        `POST /v1/auth/logout` (reference: auth-logout.html)"""
        return cast("None", await self._core.op("auth-logout", {}, {}, None, "none"))

    async def get_me(self) -> User:
        """The signed-in user's account.

        `GET /v1/auth/me` (reference: auth-get_me.html)"""
        return cast("User", await self._core.op("auth-get_me", {}, {}, None, "json"))

    async def update_me(self, body: UserUpdate) -> User:
        """Change the account's display name.

        `PATCH /v1/auth/me` (reference: auth-update_me.html)"""
        return cast("User", await self._core.op("auth-update_me", {}, {}, body, "json"))

    async def delete_me(self) -> None:
        """Soft-delete the calling user's account (sudo): sessions and keys revoked, memberships

        `DELETE /v1/auth/me` (reference: auth-delete_me.html)"""
        return cast("None", await self._core.op("auth-delete_me", {}, {}, None, "none"))

    async def change_email(self, body: EmailChange) -> Message:
        """Ask to change the email (sudo); the same answer whether or not the address is taken.

        `POST /v1/auth/me/email` (reference: auth-change_email.html)"""
        return cast("Message", await self._core.op("auth-change_email", {}, {}, body, "json"))

    async def confirm_email_change(self, body: EmailConfirm) -> Message:
        """Confirm the new address with the emailed token; every session is signed out.

        `POST /v1/auth/me/email/confirm` (reference: auth-confirm_email_change.html)"""
        return cast(
            "Message", await self._core.op("auth-confirm_email_change", {}, {}, body, "json")
        )

    async def export_me(self) -> dict[str, Any]:
        """Every record stored about the calling user as one JSON document, secrets redacted.

        `POST /v1/auth/me/export` (reference: auth-export_me.html)"""
        return cast("dict[str, Any]", await self._core.op("auth-export_me", {}, {}, None, "json"))

    async def change_password(self, body: ChangePasswordRequest) -> Message:
        """Change the password (the current one is required); other sessions are signed out.

        `POST /v1/auth/me/password` (reference: auth-change_password.html)"""
        return cast("Message", await self._core.op("auth-change_password", {}, {}, body, "json"))

    async def change_phone(self, body: PhoneCode) -> User:
        """Change the phone in one step (sudo): the new number and the code just texted to it.

        `POST /v1/auth/me/phone` (reference: auth-change_phone.html)"""
        return cast("User", await self._core.op("auth-change_phone", {}, {}, body, "json"))

    async def regenerate_backup_codes(self) -> BackupCodes:
        """Replace the backup codes (sudo); the new ones are shown only in this answer.

        `POST /v1/auth/mfa/backup-codes/regenerate` (reference: auth-regenerate_backup_codes.html)"""
        return cast(
            "BackupCodes", await self._core.op("auth-regenerate_backup_codes", {}, {}, None, "json")
        )

    async def email_enroll(self) -> EnrollmentStarted:
        """Start adding the account's email address as a factor: a code is emailed.

        `POST /v1/auth/mfa/email/enroll` (reference: auth-email_enroll.html)"""
        return cast(
            "EnrollmentStarted", await self._core.op("auth-email_enroll", {}, {}, None, "json")
        )

    async def email_verify(self, body: CodeIn) -> Factor:
        """Confirm the email factor with the emailed code.

        `POST /v1/auth/mfa/email/verify` (reference: auth-email_verify.html)"""
        return cast("Factor", await self._core.op("auth-email_verify", {}, {}, body, "json"))

    async def list_factors(self) -> FactorList:
        """The account's confirmed second factors and how many backup codes are left.

        `GET /v1/auth/mfa/factors` (reference: auth-list_factors.html)"""
        return cast("FactorList", await self._core.op("auth-list_factors", {}, {}, None, "json"))

    async def remove_factor(self, id: str) -> None:
        """Remove a second factor (sudo). Removing the last one also drops the backup codes.

        `POST /v1/auth/mfa/factors/{id}/remove` (reference: auth-remove_factor.html)"""
        return cast("None", await self._core.op("auth-remove_factor", {"id": id}, {}, None, "none"))

    async def sms_enroll(self, body: SmsEnroll) -> EnrollmentStarted:
        """Start adding a phone as a factor: a code is texted to it.

        `POST /v1/auth/mfa/sms/enroll` (reference: auth-sms_enroll.html)"""
        return cast(
            "EnrollmentStarted", await self._core.op("auth-sms_enroll", {}, {}, body, "json")
        )

    async def sms_verify(self, body: CodeIn) -> Factor:
        """Confirm the phone factor with the texted code.

        `POST /v1/auth/mfa/sms/verify` (reference: auth-sms_verify.html)"""
        return cast("Factor", await self._core.op("auth-sms_verify", {}, {}, body, "json"))

    async def totp_enroll_begin(self) -> TotpEnrollment:
        """Start adding an authenticator app: the secret, its otpauth URI and a QR code (SVG).

        `POST /v1/auth/mfa/totp/enroll/begin` (reference: auth-totp_enroll_begin.html)"""
        return cast(
            "TotpEnrollment", await self._core.op("auth-totp_enroll_begin", {}, {}, None, "json")
        )

    async def totp_enroll_finish(self, body: TotpFinish) -> Factor:
        """Confirm the authenticator app with a current code.

        `POST /v1/auth/mfa/totp/enroll/finish` (reference: auth-totp_enroll_finish.html)"""
        return cast("Factor", await self._core.op("auth-totp_enroll_finish", {}, {}, body, "json"))

    async def webauthn_register_begin(self) -> WebauthnRegisterBegin:
        """Start a passkey registration: options for navigator.credentials.create().

        `POST /v1/auth/mfa/webauthn/register/begin` (reference: auth-webauthn_register_begin.html)"""
        return cast(
            "WebauthnRegisterBegin",
            await self._core.op("auth-webauthn_register_begin", {}, {}, None, "json"),
        )

    async def webauthn_register_finish(self, body: WebauthnRegisterFinish) -> Factor:
        """Finish the passkey registration; the passkey becomes a confirmed factor.

        `POST /v1/auth/mfa/webauthn/register/finish` (reference: auth-webauthn_register_finish.html)"""
        return cast(
            "Factor", await self._core.op("auth-webauthn_register_finish", {}, {}, body, "json")
        )

    async def list_providers(self) -> ProviderList:
        """The OAuth and OpenID Connect providers this server offers for sign-in.

        `GET /v1/auth/oauth/providers` (reference: auth-list_providers.html)"""
        return cast(
            "ProviderList", await self._core.op("auth-list_providers", {}, {}, None, "json")
        )

    async def start_oauth(self, provider: str) -> None:
        """Redirect to the provider's consent page (with state and PKCE).

        `GET /v1/auth/oauth/{provider}` (reference: auth-start_oauth.html)"""
        return cast(
            "None",
            await self._core.op("auth-start_oauth", {"provider": provider}, {}, None, "none"),
        )

    async def oauth_callback(
        self,
        provider: str,
        *,
        code: str | None = None,
        state: str | None = None,
        error: str | None = None,
    ) -> LoginResult:
        """Finish the provider's redirect: sign in (linking or creating the account) or answer

        `GET /v1/auth/oauth/{provider}/callback` (reference: auth-oauth_callback.html)"""
        return cast(
            "LoginResult",
            await self._core.op(
                "auth-oauth_callback",
                {"provider": provider},
                {"code": code, "state": state, "error": error},
                None,
                "json",
            ),
        )

    async def send_phone_code(self, body: PhoneIn) -> CodeSentTo:
        """Text a 6-digit code to a phone number, to verify it.

        `POST /v1/auth/phone/send-code` (reference: auth-send_phone_code.html)"""
        return cast("CodeSentTo", await self._core.op("auth-send_phone_code", {}, {}, body, "json"))

    async def verify_phone(self, body: PhoneCode) -> User:
        """Verify and save a first phone number with the code just texted to it.

        `POST /v1/auth/phone/verify` (reference: auth-verify_phone.html)"""
        return cast("User", await self._core.op("auth-verify_phone", {}, {}, body, "json"))

    async def complete_recovery(self, body: RecoveryComplete) -> Message:
        """After the cooldown, remove every MFA factor and sign out every session.

        `POST /v1/auth/recovery/complete` (reference: auth-complete_recovery.html)"""
        return cast("Message", await self._core.op("auth-complete_recovery", {}, {}, body, "json"))

    async def request_recovery(self, body: RecoveryRequest) -> Message:
        """Email a recovery token (usable after the cooldown); the same answer for every address.

        `POST /v1/auth/recovery/request` (reference: auth-request_recovery.html)"""
        return cast("Message", await self._core.op("auth-request_recovery", {}, {}, body, "json"))

    async def refresh(self) -> LoginResult:
        """Rotate the refresh token; reusing an old one revokes the whole session.

        `POST /v1/auth/refresh` (reference: auth-refresh.html)"""
        return cast("LoginResult", await self._core.op("auth-refresh", {}, {}, None, "json"))

    async def reset_password(self, body: ResetPasswordRequest) -> Message:
        """Set a new password with the emailed token; every session of the account is signed out.

        `POST /v1/auth/reset-password` (reference: auth-reset_password.html)"""
        return cast("Message", await self._core.op("auth-reset_password", {}, {}, body, "json"))

    async def set_password(self, body: SetPasswordRequest) -> Message:
        """Give a password to an account that has none (one created by OAuth or magic link).

        `POST /v1/auth/set-password` (reference: auth-set_password.html)"""
        return cast("Message", await self._core.op("auth-set_password", {}, {}, body, "json"))

    async def signup(self, body: SignupRequest) -> Message:
        """Create an account and its personal org, and email a verification link.

        `POST /v1/auth/signup` (reference: auth-signup.html)"""
        return cast("Message", await self._core.op("auth-signup", {}, {}, body, "json"))

    async def sudo(self, body: SudoRequest) -> SudoGrantOut:
        """Re-verify the password and mint a 5-minute sudo-grant cookie for destructive routes.

        `POST /v1/auth/sudo` (reference: auth-sudo.html)"""
        return cast("SudoGrantOut", await self._core.op("auth-sudo", {}, {}, body, "json"))

    async def verify_email(self, *, token: str) -> VerifyEmailResult:
        """Confirm an email address with the emailed token.

        `GET /v1/auth/verify-email` (reference: auth-verify_email.html)"""
        return cast(
            "VerifyEmailResult",
            await self._core.op("auth-verify_email", {}, {"token": token}, None, "json"),
        )


class AsyncBaseImagesApi:
    """Operations tagged `base_images`."""

    def __init__(self, core: AsyncCore) -> None:
        self._core = core

    async def list_base_images(
        self, *, family: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> Page_BaseImageOut_:
        """The org's images and the platform's, every version, newest first.

        `GET /v1/base-images` (reference: base_images-list_base_images.html)"""
        return cast(
            "Page_BaseImageOut_",
            await self._core.op(
                "base_images-list_base_images",
                {},
                {"family": family, "limit": limit, "cursor": cursor},
                None,
                "json",
            ),
        )

    async def get_default_image(self) -> BaseImageOut:
        """The image new instances get when they name none: the `default` family's current version.

        `GET /v1/base-images/default` (reference: base_images-get_default_image.html)"""
        return cast(
            "BaseImageOut",
            await self._core.op("base_images-get_default_image", {}, {}, None, "json"),
        )

    async def get_family_current(self, family: str) -> BaseImageOut:
        """The family's current version (the org's family of that name first, then the platform's).

        `GET /v1/base-images/family/{family}` (reference: base_images-get_family_current.html)"""
        return cast(
            "BaseImageOut",
            await self._core.op(
                "base_images-get_family_current", {"family": family}, {}, None, "json"
            ),
        )

    async def rollback_family(self, family: str) -> BaseImageOut:
        """Make the family's previous promoted version current again (running instances keep theirs).

        `POST /v1/base-images/family/{family}/rollback` (reference: base_images-rollback_family.html)"""
        return cast(
            "BaseImageOut",
            await self._core.op(
                "base_images-rollback_family", {"family": family}, {}, None, "json"
            ),
        )

    async def list_family_versions(
        self, family: str, *, limit: int | None = None, cursor: str | None = None
    ) -> Page_BaseImageOut_:
        """Every version of the family, newest first.

        `GET /v1/base-images/family/{family}/versions` (reference: base_images-list_family_versions.html)"""
        return cast(
            "Page_BaseImageOut_",
            await self._core.op(
                "base_images-list_family_versions",
                {"family": family},
                {"limit": limit, "cursor": cursor},
                None,
                "json",
            ),
        )

    async def get_base_image(self, id: str) -> BaseImageOut:
        """One image version, with its build logs.

        `GET /v1/base-images/{id}` (reference: base_images-get_base_image.html)"""
        return cast(
            "BaseImageOut",
            await self._core.op("base_images-get_base_image", {"id": id}, {}, None, "json"),
        )

    async def delete_base_image(self, id: str) -> None:
        """Delete a version that is neither current nor used by an instance nor building.

        `DELETE /v1/base-images/{id}` (reference: base_images-delete_base_image.html)"""
        return cast(
            "None",
            await self._core.op("base_images-delete_base_image", {"id": id}, {}, None, "none"),
        )

    async def abort_image(self, body: ImageRef) -> BaseImageOut:
        """Cancel a build; its build sandbox and partial layer are cleaned up.

        `POST /v1/images/abort` (reference: base_images-abort_image.html)"""
        return cast(
            "BaseImageOut", await self._core.op("base_images-abort_image", {}, {}, body, "json")
        )

    async def prepare_image(self, body: ImagePrepare) -> BaseImageOut:
        """Build a new version of a family in the background (poll it for progress and logs).

        `POST /v1/images/prepare` (reference: base_images-prepare_image.html)"""
        return cast(
            "BaseImageOut", await self._core.op("base_images-prepare_image", {}, {}, body, "json")
        )

    async def promote_image(self, body: ImageRef) -> BaseImageOut:
        """Make a ready version its family's current one; new instances get it.

        `POST /v1/images/promote` (reference: base_images-promote_image.html)"""
        return cast(
            "BaseImageOut", await self._core.op("base_images-promote_image", {}, {}, body, "json")
        )


class AsyncCheckpointsApi:
    """Operations tagged `checkpoints`."""

    def __init__(self, core: AsyncCore) -> None:
        self._core = core

    async def list_checkpoints(
        self, id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> Page_CheckpointOut_:
        """The instance's checkpoints, newest first; `parent_id` links them into a tree.

        `GET /v1/instances/{id}/checkpoints` (reference: checkpoints-list_checkpoints.html)"""
        return cast(
            "Page_CheckpointOut_",
            await self._core.op(
                "checkpoints-list_checkpoints",
                {"id": id},
                {"limit": limit, "cursor": cursor},
                None,
                "json",
            ),
        )

    async def create_checkpoint(self, id: str, body: CheckpointCreate) -> CheckpointOut:
        """Capture the instance's filesystem now; its processes pause only for the capture.

        `POST /v1/instances/{id}/checkpoints` (reference: checkpoints-create_checkpoint.html)"""
        return cast(
            "CheckpointOut",
            await self._core.op("checkpoints-create_checkpoint", {"id": id}, {}, body, "json"),
        )

    async def rollback(self, id: str, body: RollbackRequest) -> RollbackOut:
        """Make the filesystem exactly the checkpoint's (processes restart; the state before is kept).

        `POST /v1/instances/{id}/rollback` (reference: checkpoints-rollback.html)"""
        return cast(
            "RollbackOut", await self._core.op("checkpoints-rollback", {"id": id}, {}, body, "json")
        )

    async def get_checkpoint_route(self, instance_id: str, checkpoint_id: str) -> CheckpointOut:
        """One checkpoint.

        `GET /v1/instances/{instance_id}/checkpoints/{checkpoint_id}` (reference: checkpoints-get_checkpoint_route.html)"""
        return cast(
            "CheckpointOut",
            await self._core.op(
                "checkpoints-get_checkpoint_route",
                {"instance_id": instance_id, "checkpoint_id": checkpoint_id},
                {},
                None,
                "json",
            ),
        )

    async def delete_checkpoint(self, instance_id: str, checkpoint_id: str) -> None:
        """Delete a checkpoint; its children hang from its parent, and its space is reclaimed.

        `DELETE /v1/instances/{instance_id}/checkpoints/{checkpoint_id}` (reference: checkpoints-delete_checkpoint.html)"""
        return cast(
            "None",
            await self._core.op(
                "checkpoints-delete_checkpoint",
                {"instance_id": instance_id, "checkpoint_id": checkpoint_id},
                {},
                None,
                "none",
            ),
        )


class AsyncComputeServersApi:
    """Operations tagged `compute_servers`."""

    def __init__(self, core: AsyncCore) -> None:
        self._core = core

    async def list_servers(self) -> Page_ServerOut_:
        """Every compute server with capacity, status and heartbeat freshness.

        `GET /v1/admin/servers` (reference: compute_servers-list_servers.html)"""
        return cast(
            "Page_ServerOut_",
            await self._core.op("compute_servers-list_servers", {}, {}, None, "json"),
        )

    async def get_server(self, id: str) -> ServerOut:
        """One compute server.

        `GET /v1/admin/servers/{id}` (reference: compute_servers-get_server.html)"""
        return cast(
            "ServerOut",
            await self._core.op("compute_servers-get_server", {"id": id}, {}, None, "json"),
        )

    async def drain_server(self, id: str) -> ServerOut:
        """Stop placing new instances here; instances already on it keep running.

        `POST /v1/admin/servers/{id}/drain` (reference: compute_servers-drain_server.html)"""
        return cast(
            "ServerOut",
            await self._core.op("compute_servers-drain_server", {"id": id}, {}, None, "json"),
        )

    async def server_metrics(self, id: str) -> Metrics:
        """The server's last reported capacity and its instances by status.

        `GET /v1/admin/servers/{id}/metrics` (reference: compute_servers-server_metrics.html)"""
        return cast(
            "Metrics",
            await self._core.op("compute_servers-server_metrics", {"id": id}, {}, None, "json"),
        )

    async def set_server_status(self, id: str, body: ServerStatusUpdate) -> ServerOut:
        """Set a server active, draining or disabled.

        `PATCH /v1/admin/servers/{id}/status` (reference: compute_servers-set_server_status.html)"""
        return cast(
            "ServerOut",
            await self._core.op("compute_servers-set_server_status", {"id": id}, {}, body, "json"),
        )

    async def server_vm_storage(self, id: str) -> dict[str, Any]:
        """Disk used per instance on this server, its layers (what stacks on each) and free space.

        `GET /v1/admin/servers/{id}/vm-storage` (reference: compute_servers-server_vm_storage.html)"""
        return cast(
            "dict[str, Any]",
            await self._core.op("compute_servers-server_vm_storage", {"id": id}, {}, None, "json"),
        )


class AsyncEventsApi:
    """Operations tagged `events`."""

    def __init__(self, core: AsyncCore) -> None:
        self._core = core

    async def list_events(
        self,
        *,
        type: str | None = None,
        resource_type: str | None = None,
        resource_id: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page_EventOut_:
        """The caller's org's events, newest first.

        `GET /v1/events` (reference: events-list_events.html)"""
        return cast(
            "Page_EventOut_",
            await self._core.op(
                "events-list_events",
                {},
                {
                    "type": type,
                    "resource_type": resource_type,
                    "resource_id": resource_id,
                    "limit": limit,
                    "cursor": cursor,
                },
                None,
                "json",
            ),
        )

    def stream_events(
        self,
        *,
        type: str | None = None,
        resource_type: str | None = None,
        resource_id: str | None = None,
    ) -> AsyncIterator[Event]:
        """SSE stream of the caller's org's events as they commit (event: the type, data: the event).

        `GET /v1/events/stream` (reference: events-stream_events.html)"""
        return self._core.stream_op(
            "events-stream_events",
            {},
            {"type": type, "resource_type": resource_type, "resource_id": resource_id},
            None,
            "stream",
        )

    async def get_event(self, id: str) -> EventOut:
        """One event of the caller's org.

        `GET /v1/events/{id}` (reference: events-get_event.html)"""
        return cast(
            "EventOut", await self._core.op("events-get_event", {"id": id}, {}, None, "json")
        )


class AsyncExecApi:
    """Operations tagged `exec`."""

    def __init__(self, core: AsyncCore) -> None:
        self._core = core

    async def list_execs(self, id: str, *, limit: int | None = None) -> Page_ExecRecordOut_:
        """Recent execs in this instance: command, status, exit code and timings, newest first.

        `GET /v1/instances/{id}/exec` (reference: exec-list_execs.html)"""
        return cast(
            "Page_ExecRecordOut_",
            await self._core.op("exec-list_execs", {"id": id}, {"limit": limit}, None, "json"),
        )

    async def run_command(self, id: str, body: ExecRequest) -> ExecResultOut:
        """Run a command to completion and return its exit code and output.

        `POST /v1/instances/{id}/exec` (reference: exec-run_command.html)"""
        return cast(
            "ExecResultOut", await self._core.op("exec-run_command", {"id": id}, {}, body, "json")
        )

    def stream_command(self, id: str, body: ExecRequest) -> AsyncIterator[Event]:
        """SSE stream of exec frames: `start` {exec_id, pid}, `stdout`/`stderr` {data}, then `exit` {exit_code, duration_ms} or `error`. A client that disconnects has its process killed.

        `POST /v1/instances/{id}/exec/stream` (reference: exec-stream_command.html)"""
        return self._core.stream_op("exec-stream_command", {"id": id}, {}, body, "stream")


class AsyncFilesApi:
    """Operations tagged `files`."""

    def __init__(self, core: AsyncCore) -> None:
        self._core = core

    async def read_file(
        self, id: str, *, path: str, offset: int | None = None, limit: int | None = None
    ) -> bytes:
        """A regular file's bytes, streamed; `offset` and `limit` read a range. A whole file over the server's read limit (or a range past it) is 400 `file_too_large`; a device, FIFO or socket is 400 `not_a_regular_file`.

        `GET /v1/instances/{id}/files` (reference: files-read_file.html)"""
        return cast(
            "bytes",
            await self._core.op(
                "files-read_file",
                {"id": id},
                {"path": path, "offset": offset, "limit": limit},
                None,
                "bytes",
            ),
        )

    async def write_file(self, id: str, body: FileWrite) -> FileEntry:
        """Write a file (UTF-8 text or base64 bytes), creating parent directories unless told not to.

        `POST /v1/instances/{id}/files` (reference: files-write_file.html)"""
        return cast(
            "FileEntry", await self._core.op("files-write_file", {"id": id}, {}, body, "json")
        )

    async def edit_file(self, id: str, body: FileEdit) -> EditResultOut:
        """Replace exactly one occurrence of old_str (or all with replace_all); with zero or several matches nothing changes and the count is reported.

        `POST /v1/instances/{id}/files/edit` (reference: files-edit_file.html)"""
        return cast(
            "EditResultOut", await self._core.op("files-edit_file", {"id": id}, {}, body, "json")
        )

    async def list_files(
        self, id: str, *, path: str | None = None, depth: int | None = None
    ) -> Page_FileEntry_:
        """Entries under a directory (to `depth` levels): name, path, type, size, mode, modified time.

        `GET /v1/instances/{id}/files/list` (reference: files-list_files.html)"""
        return cast(
            "Page_FileEntry_",
            await self._core.op(
                "files-list_files", {"id": id}, {"path": path, "depth": depth}, None, "json"
            ),
        )

    def watch_files(
        self, id: str, *, path: str | None = None, recursive: bool | None = None
    ) -> AsyncIterator[Event]:
        """Changes under a directory of the instance as server-sent events (inotify inside it).

        `GET /v1/instances/{id}/files/watch` (reference: files-watch_files.html)"""
        return self._core.stream_op(
            "files-watch_files", {"id": id}, {"path": path, "recursive": recursive}, None, "stream"
        )


class AsyncHealthApi:
    """Operations tagged `health`."""

    def __init__(self, core: AsyncCore) -> None:
        self._core = core

    async def health(self) -> HealthStatus:
        """Overall health: the readiness checks with their details.

        `GET /health` (reference: health-health.html)"""
        return cast("HealthStatus", await self._core.op("health-health", {}, {}, None, "json"))

    async def health_live(self) -> HealthStatus:
        """Cheapest possible probe — process is up.

        `GET /health/live` (reference: health-health_live.html)"""
        return cast("HealthStatus", await self._core.op("health-health_live", {}, {}, None, "json"))

    async def health_ready(self) -> HealthStatus:
        """Ready to serve: database reachable, migrations current, worker heartbeat fresh.

        `GET /health/ready` (reference: health-health_ready.html)"""
        return cast(
            "HealthStatus", await self._core.op("health-health_ready", {}, {}, None, "json")
        )

    async def health_startup(self) -> HealthStatus:
        """Startup finished: migrations applied and background services launched.

        `GET /health/startup` (reference: health-health_startup.html)"""
        return cast(
            "HealthStatus", await self._core.op("health-health_startup", {}, {}, None, "json")
        )


class AsyncInstancesApi:
    """Operations tagged `instances`."""

    def __init__(self, core: AsyncCore) -> None:
        self._core = core

    async def list_instances(
        self,
        *,
        status: str | None = None,
        label: list[str] | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page_InstanceOut_:
        """The org's instances, newest first, filtered by status and labels.

        `GET /v1/instances` (reference: instances-list_instances.html)"""
        return cast(
            "Page_InstanceOut_",
            await self._core.op(
                "instances-list_instances",
                {},
                {"status": status, "label": label, "limit": limit, "cursor": cursor},
                None,
                "json",
            ),
        )

    async def create_instance_route(
        self, body: InstanceCreate, *, wait: bool | None = None
    ) -> InstanceOut:
        """Create an instance; it answers `provisioning` and becomes `running` when its agent answers (or, with `wait=true`, answers once it runs).

        `POST /v1/instances` (reference: instances-create_instance_route.html)"""
        return cast(
            "InstanceOut",
            await self._core.op(
                "instances-create_instance_route", {}, {"wait": wait}, body, "json"
            ),
        )

    async def get_instance_route(self, id: str) -> InstanceOut:
        """One instance.

        `GET /v1/instances/{id}` (reference: instances-get_instance_route.html)"""
        return cast(
            "InstanceOut",
            await self._core.op("instances-get_instance_route", {"id": id}, {}, None, "json"),
        )

    async def update_instance(self, id: str, body: InstanceUpdate) -> InstanceOut:
        """Rename an instance or change its labels, idle timeout or egress policy (`network`: a

        `PATCH /v1/instances/{id}` (reference: instances-update_instance.html)"""
        return cast(
            "InstanceOut",
            await self._core.op("instances-update_instance", {"id": id}, {}, body, "json"),
        )

    async def delete_instance(self, id: str) -> InstanceOut:
        """Delete an instance: every process, mount, cgroup and byte of its storage goes.

        `DELETE /v1/instances/{id}` (reference: instances-delete_instance.html)"""
        return cast(
            "InstanceOut",
            await self._core.op("instances-delete_instance", {"id": id}, {}, None, "json"),
        )

    async def fork_instance(
        self, id: str, body: ForkRequest, *, wait: bool | None = None
    ) -> ForkOut:
        """Fork the instance into `count` new ones with its filesystem as it is now.

        `POST /v1/instances/{id}/fork` (reference: instances-fork_instance.html)"""
        return cast(
            "ForkOut",
            await self._core.op(
                "instances-fork_instance", {"id": id}, {"wait": wait}, body, "json"
            ),
        )


class AsyncInternalApi:
    """Operations tagged `internal`."""

    def __init__(self, core: AsyncCore) -> None:
        self._core = core

    async def register_server(self, body: RegisterRequest) -> RegisterResponse:
        """A node announces itself (again): its URL, secret, driver and capacity.

        `POST /v1/internal/servers/register` (reference: internal-register_server.html)"""
        return cast(
            "RegisterResponse",
            await self._core.op("internal-register_server", {}, {}, body, "json"),
        )

    async def server_heartbeat(self, id: str, body: HeartbeatRequest) -> HeartbeatResponse:
        """A node's periodic report: capacity and the state of every instance it holds.

        `POST /v1/internal/servers/{id}/heartbeat` (reference: internal-server_heartbeat.html)"""
        return cast(
            "HeartbeatResponse",
            await self._core.op("internal-server_heartbeat", {"id": id}, {}, body, "json"),
        )


class AsyncInvitationsApi:
    """Operations tagged `invitations`."""

    def __init__(self, core: AsyncCore) -> None:
        self._core = core

    async def get_invitation(self, token: str) -> InvitationPreview:
        """What an emailed invitation offers: the org, the role, who sent it and when it expires.

        `GET /v1/auth/invitations/{token}` (reference: invitations-get_invitation.html)"""
        return cast(
            "InvitationPreview",
            await self._core.op("invitations-get_invitation", {"token": token}, {}, None, "json"),
        )

    async def accept_invitation(self, token: str) -> Org:
        """Join the org an invitation names; your account's email must be the invited address.

        `POST /v1/auth/invitations/{token}/accept` (reference: invitations-accept_invitation.html)"""
        return cast(
            "Org",
            await self._core.op(
                "invitations-accept_invitation", {"token": token}, {}, None, "json"
            ),
        )

    async def list_invitations(
        self, org_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> Page_Invitation_:
        """The org's pending invitations, newest first (admins).

        `GET /v1/orgs/{org_id}/invitations` (reference: invitations-list_invitations.html)"""
        return cast(
            "Page_Invitation_",
            await self._core.op(
                "invitations-list_invitations",
                {"org_id": org_id},
                {"limit": limit, "cursor": cursor},
                None,
                "json",
            ),
        )

    async def create_invitation(self, org_id: str, body: InvitationCreate) -> Invitation:
        """Invite someone by email to join the org with a role (admins); the link is emailed.

        `POST /v1/orgs/{org_id}/invitations` (reference: invitations-create_invitation.html)"""
        return cast(
            "Invitation",
            await self._core.op(
                "invitations-create_invitation", {"org_id": org_id}, {}, body, "json"
            ),
        )

    async def revoke_invitation(self, org_id: str, inv_id: str) -> None:
        """Revoke an invitation; its link stops working (admins).

        `DELETE /v1/orgs/{org_id}/invitations/{inv_id}` (reference: invitations-revoke_invitation.html)"""
        return cast(
            "None",
            await self._core.op(
                "invitations-revoke_invitation",
                {"org_id": org_id, "inv_id": inv_id},
                {},
                None,
                "none",
            ),
        )


class AsyncLspApi:
    """Operations tagged `lsp`."""

    def __init__(self, core: AsyncCore) -> None:
        self._core = core

    async def list_language_servers(self, id: str) -> Page_LanguageServer_:
        """The language servers the instance's image offers (found on its PATH), and those running.

        `GET /v1/instances/{id}/lsp` (reference: lsp-list_language_servers.html)"""
        return cast(
            "Page_LanguageServer_",
            await self._core.op("lsp-list_language_servers", {"id": id}, {}, None, "json"),
        )


class AsyncMembersApi:
    """Operations tagged `members`."""

    def __init__(self, core: AsyncCore) -> None:
        self._core = core

    async def list_members(
        self, org_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> Page_Member_:
        """The org's members and their roles, newest first.

        `GET /v1/orgs/{org_id}/members` (reference: members-list_members.html)"""
        return cast(
            "Page_Member_",
            await self._core.op(
                "members-list_members",
                {"org_id": org_id},
                {"limit": limit, "cursor": cursor},
                None,
                "json",
            ),
        )

    async def update_member(self, org_id: str, user_id: str, body: MemberUpdate) -> Member:
        """Change a member's role (admins; only owners grant or remove the owner role).

        `PATCH /v1/orgs/{org_id}/members/{user_id}` (reference: members-update_member.html)"""
        return cast(
            "Member",
            await self._core.op(
                "members-update_member", {"org_id": org_id, "user_id": user_id}, {}, body, "json"
            ),
        )

    async def remove_member(self, org_id: str, user_id: str) -> None:
        """Remove a member (admins), or leave the org by naming yourself; the last owner stays.

        `DELETE /v1/orgs/{org_id}/members/{user_id}` (reference: members-remove_member.html)"""
        return cast(
            "None",
            await self._core.op(
                "members-remove_member", {"org_id": org_id, "user_id": user_id}, {}, None, "none"
            ),
        )


class AsyncNotificationsApi:
    """Operations tagged `notifications`."""

    def __init__(self, core: AsyncCore) -> None:
        self._core = core

    async def list_notifications(
        self, *, unread: bool | None = None, limit: int | None = None, cursor: str | None = None
    ) -> Page_NotificationOut_:
        """Your notices, newest first.

        `GET /v1/notifications` (reference: notifications-list_notifications.html)"""
        return cast(
            "Page_NotificationOut_",
            await self._core.op(
                "notifications-list_notifications",
                {},
                {"unread": unread, "limit": limit, "cursor": cursor},
                None,
                "json",
            ),
        )

    async def read_all_notifications(self) -> ReadAllResult:
        """Mark every one of your notices read.

        `POST /v1/notifications/read-all` (reference: notifications-read_all_notifications.html)"""
        return cast(
            "ReadAllResult",
            await self._core.op("notifications-read_all_notifications", {}, {}, None, "json"),
        )

    async def get_notification_settings(self) -> NotificationSettings:
        """Which categories reach you in the app and by email.

        `GET /v1/notifications/settings` (reference: notifications-get_notification_settings.html)"""
        return cast(
            "NotificationSettings",
            await self._core.op("notifications-get_notification_settings", {}, {}, None, "json"),
        )

    async def update_notification_settings(
        self, body: NotificationSettingsUpdate
    ) -> NotificationSettings:
        """Choose the channels of some categories (security stays on).

        `PUT /v1/notifications/settings` (reference: notifications-update_notification_settings.html)"""
        return cast(
            "NotificationSettings",
            await self._core.op("notifications-update_notification_settings", {}, {}, body, "json"),
        )

    def stream_notifications(self) -> AsyncIterator[Event]:
        """SSE stream of your new notices (event: `notification`, data: the notice).

        `GET /v1/notifications/stream` (reference: notifications-stream_notifications.html)"""
        return self._core.stream_op("notifications-stream_notifications", {}, {}, None, "stream")

    async def read_notification(self, id: str) -> NotificationOut:
        """Mark one notice read.

        `POST /v1/notifications/{id}/read` (reference: notifications-read_notification.html)"""
        return cast(
            "NotificationOut",
            await self._core.op("notifications-read_notification", {"id": id}, {}, None, "json"),
        )


class AsyncOrgsApi:
    """Operations tagged `orgs`."""

    def __init__(self, core: AsyncCore) -> None:
        self._core = core

    async def list_orgs(self, *, limit: int | None = None, cursor: str | None = None) -> Page_Org_:
        """The orgs you belong to, with your role in each (an API key sees only its own org).

        `GET /v1/orgs` (reference: orgs-list_orgs.html)"""
        return cast(
            "Page_Org_",
            await self._core.op(
                "orgs-list_orgs", {}, {"limit": limit, "cursor": cursor}, None, "json"
            ),
        )

    async def create_org(self, body: OrgCreate) -> Org:
        """Create a team org; you become its owner (signed-in users only).

        `POST /v1/orgs` (reference: orgs-create_org.html)"""
        return cast("Org", await self._core.op("orgs-create_org", {}, {}, body, "json"))

    async def list_ip_allowlist(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> Page_AllowlistEntry_:
        """The acting org's IP allowlist (admins); an empty list allows every address.

        `GET /v1/orgs/me/ip-allowlist` (reference: orgs-list_ip_allowlist.html)"""
        return cast(
            "Page_AllowlistEntry_",
            await self._core.op(
                "orgs-list_ip_allowlist", {}, {"limit": limit, "cursor": cursor}, None, "json"
            ),
        )

    async def add_ip_allowlist_entry(self, body: AllowlistEntryCreate) -> AllowlistEntry:
        """Allow an IPv4 or IPv6 range for the acting org (admins); refuses to lock you out.

        `POST /v1/orgs/me/ip-allowlist` (reference: orgs-add_ip_allowlist_entry.html)"""
        return cast(
            "AllowlistEntry",
            await self._core.op("orgs-add_ip_allowlist_entry", {}, {}, body, "json"),
        )

    async def remove_ip_allowlist_entry(
        self, entry_id: str, *, confirm_lockout: bool | None = None
    ) -> None:
        """Remove an entry from the acting org's IP allowlist (admins).

        `DELETE /v1/orgs/me/ip-allowlist/{entry_id}` (reference: orgs-remove_ip_allowlist_entry.html)"""
        return cast(
            "None",
            await self._core.op(
                "orgs-remove_ip_allowlist_entry",
                {"entry_id": entry_id},
                {"confirm_lockout": confirm_lockout},
                None,
                "none",
            ),
        )

    async def get_org(self, id: str) -> Org:
        """One org you belong to, with your role in it.

        `GET /v1/orgs/{id}` (reference: orgs-get_org.html)"""
        return cast("Org", await self._core.op("orgs-get_org", {"id": id}, {}, None, "json"))

    async def update_org(self, id: str, body: OrgUpdate) -> Org:
        """Rename an org (admins and owners).

        `PATCH /v1/orgs/{id}` (reference: orgs-update_org.html)"""
        return cast("Org", await self._core.op("orgs-update_org", {"id": id}, {}, body, "json"))

    async def list_org_members(
        self, id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> Page_Member_:
        """The org's members and their roles, newest first.

        `GET /v1/orgs/{id}/members` (reference: orgs-list_org_members.html)"""
        return cast(
            "Page_Member_",
            await self._core.op(
                "orgs-list_org_members",
                {"id": id},
                {"limit": limit, "cursor": cursor},
                None,
                "json",
            ),
        )


class AsyncPortForwardsApi:
    """Operations tagged `port_forwards`."""

    def __init__(self, core: AsyncCore) -> None:
        self._core = core

    async def list_port_forwards(self, id: str) -> Page_PortForwardOut_:
        """The instance's port forwards, by port.

        `GET /v1/instances/{id}/port-forwards` (reference: port_forwards-list_port_forwards.html)"""
        return cast(
            "Page_PortForwardOut_",
            await self._core.op("port_forwards-list_port_forwards", {"id": id}, {}, None, "json"),
        )

    async def create_port_forward(self, id: str, body: PortForwardCreate) -> PortForwardOut:
        """Forward a port of the instance: an HTTP preview URL or a TCP tunnel; a port once only.

        `POST /v1/instances/{id}/port-forwards` (reference: port_forwards-create_port_forward.html)"""
        return cast(
            "PortForwardOut",
            await self._core.op("port_forwards-create_port_forward", {"id": id}, {}, body, "json"),
        )

    async def delete_port_forward(self, instance_id: str, forward_id: str) -> None:
        """Stop forwarding the port; its preview URL and share links stop working at once.

        `DELETE /v1/instances/{instance_id}/port-forwards/{forward_id}` (reference: port_forwards-delete_port_forward.html)"""
        return cast(
            "None",
            await self._core.op(
                "port_forwards-delete_port_forward",
                {"instance_id": instance_id, "forward_id": forward_id},
                {},
                None,
                "none",
            ),
        )

    async def share_port_forward(self, instance_id: str, forward_id: str) -> ShareOut:
        """A short-lived link that opens a private preview for whoever has it (that port only).

        `POST /v1/instances/{instance_id}/port-forwards/{forward_id}/share` (reference: port_forwards-share_port_forward.html)"""
        return cast(
            "ShareOut",
            await self._core.op(
                "port_forwards-share_port_forward",
                {"instance_id": instance_id, "forward_id": forward_id},
                {},
                None,
                "json",
            ),
        )


class AsyncProfilesApi:
    """Operations tagged `profiles`."""

    def __init__(self, core: AsyncCore) -> None:
        self._core = core

    async def list_profiles(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> Page_ProfileOut_:
        """The org's profiles, newest first.

        `GET /v1/profiles` (reference: profiles-list_profiles.html)"""
        return cast(
            "Page_ProfileOut_",
            await self._core.op(
                "profiles-list_profiles", {}, {"limit": limit, "cursor": cursor}, None, "json"
            ),
        )

    async def create_profile(self, body: ProfileCreate) -> ProfileOut:
        """A named preset to create instances from: image, size, env, idle timeout, setup commands.

        `POST /v1/profiles` (reference: profiles-create_profile.html)"""
        return cast(
            "ProfileOut", await self._core.op("profiles-create_profile", {}, {}, body, "json")
        )

    async def get_profile_route(self, id: str) -> ProfileOut:
        """One profile.

        `GET /v1/profiles/{id}` (reference: profiles-get_profile_route.html)"""
        return cast(
            "ProfileOut",
            await self._core.op("profiles-get_profile_route", {"id": id}, {}, None, "json"),
        )

    async def update_profile(self, id: str, body: ProfileUpdate) -> ProfileOut:
        """Change a profile; instances already created keep their settings.

        `PATCH /v1/profiles/{id}` (reference: profiles-update_profile.html)"""
        return cast(
            "ProfileOut",
            await self._core.op("profiles-update_profile", {"id": id}, {}, body, "json"),
        )

    async def delete_profile(self, id: str) -> None:
        """Delete a profile; instances created from it are unaffected.

        `DELETE /v1/profiles/{id}` (reference: profiles-delete_profile.html)"""
        return cast(
            "None", await self._core.op("profiles-delete_profile", {"id": id}, {}, None, "none")
        )


class AsyncSessionsApi:
    """Operations tagged `sessions`."""

    def __init__(self, core: AsyncCore) -> None:
        self._core = core

    async def list_sessions(self) -> Page_Session_:
        """This user's active sessions, newest first; `current` marks the caller's own.

        `GET /v1/auth/me/sessions` (reference: sessions-list_sessions.html)"""
        return cast(
            "Page_Session_", await self._core.op("sessions-list_sessions", {}, {}, None, "json")
        )

    async def revoke_other_sessions(self) -> RevokedCount:
        """Sign out every device except the caller's. With an API key there is no current session,

        `POST /v1/auth/me/sessions/revoke-others` (reference: sessions-revoke_other_sessions.html)"""
        return cast(
            "RevokedCount",
            await self._core.op("sessions-revoke_other_sessions", {}, {}, None, "json"),
        )

    async def revoke_session(self, id: str) -> None:
        """Sign out one device. Revoking the current session signs this caller out too.

        `DELETE /v1/auth/me/sessions/{id}` (reference: sessions-revoke_session.html)"""
        return cast(
            "None", await self._core.op("sessions-revoke_session", {"id": id}, {}, None, "none")
        )


class AsyncSnapshotsApi:
    """Operations tagged `snapshots`."""

    def __init__(self, core: AsyncCore) -> None:
        self._core = core

    async def list_snapshots(
        self, id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> Page_SnapshotOut_:
        """The instance's snapshots, newest first.

        `GET /v1/instances/{id}/snapshots` (reference: snapshots-list_snapshots.html)"""
        return cast(
            "Page_SnapshotOut_",
            await self._core.op(
                "snapshots-list_snapshots",
                {"id": id},
                {"limit": limit, "cursor": cursor},
                None,
                "json",
            ),
        )

    async def create_snapshot(self, id: str, body: SnapshotCreate) -> SnapshotOut:
        """Capture the instance as a named snapshot that outlives it.

        `POST /v1/instances/{id}/snapshots` (reference: snapshots-create_snapshot.html)"""
        return cast(
            "SnapshotOut",
            await self._core.op("snapshots-create_snapshot", {"id": id}, {}, body, "json"),
        )

    async def get_snapshot(self, id: str, snapshot_id: str) -> SnapshotOut:
        """One snapshot.

        `GET /v1/instances/{id}/snapshots/{snapshot_id}` (reference: snapshots-get_snapshot.html)"""
        return cast(
            "SnapshotOut",
            await self._core.op(
                "snapshots-get_snapshot", {"id": id, "snapshot_id": snapshot_id}, {}, None, "json"
            ),
        )

    async def delete_snapshot(self, id: str, snapshot_id: str) -> None:
        """Delete a snapshot; refused while an image or instance depends on it.

        `DELETE /v1/instances/{id}/snapshots/{snapshot_id}` (reference: snapshots-delete_snapshot.html)"""
        return cast(
            "None",
            await self._core.op(
                "snapshots-delete_snapshot",
                {"id": id, "snapshot_id": snapshot_id},
                {},
                None,
                "none",
            ),
        )

    async def restore_snapshot(self, id: str, snapshot_id: str, body: RestoreRequest) -> RestoreOut:
        """Restore into this instance, or with `new_instance` into a new one.

        `POST /v1/instances/{id}/snapshots/{snapshot_id}/restore` (reference: snapshots-restore_snapshot.html)"""
        return cast(
            "RestoreOut",
            await self._core.op(
                "snapshots-restore_snapshot",
                {"id": id, "snapshot_id": snapshot_id},
                {},
                body,
                "json",
            ),
        )


class AsyncSshApi:
    """Operations tagged `ssh`."""

    def __init__(self, core: AsyncCore) -> None:
        self._core = core

    async def ssh_access(self, id: str) -> SshAccessOut:
        """How to ssh into the instance with one of your account's SSH keys (members with write access).

        `GET /v1/instances/{id}/ssh` (reference: ssh-ssh_access.html)"""
        return cast(
            "SshAccessOut", await self._core.op("ssh-ssh_access", {"id": id}, {}, None, "json")
        )


class AsyncUsersApi:
    """Operations tagged `users`."""

    def __init__(self, core: AsyncCore) -> None:
        self._core = core

    async def get_user(self, id: str) -> PublicUser:
        """A user's public profile, visible only to people who share an org with them.

        `GET /v1/users/{id}` (reference: users-get_user.html)"""
        return cast(
            "PublicUser", await self._core.op("users-get_user", {"id": id}, {}, None, "json")
        )


class AsyncVmsApi:
    """Operations tagged `vms`."""

    def __init__(self, core: AsyncCore) -> None:
        self._core = core

    async def get_vm_route(self, id: str) -> VmOut:
        """The instance's VM: state, server, pid, uptime, and live cpu, memory and disk use.

        `GET /v1/instances/{id}/vm` (reference: vms-get_vm_route.html)"""
        return cast("VmOut", await self._core.op("vms-get_vm_route", {"id": id}, {}, None, "json"))

    async def start_vm(self, id: str) -> InstanceOut:
        """Boot a stopped instance again; its disk is as it was.

        `POST /v1/instances/{id}/vm` (reference: vms-start_vm.html)"""
        return cast(
            "InstanceOut", await self._core.op("vms-start_vm", {"id": id}, {}, None, "json")
        )

    async def stop_vm(self, id: str) -> InstanceOut:
        """Stop the instance's VM; the disk stays for the next boot.

        `DELETE /v1/instances/{id}/vm` (reference: vms-stop_vm.html)"""
        return cast("InstanceOut", await self._core.op("vms-stop_vm", {"id": id}, {}, None, "json"))

    async def flush_vm(self, id: str) -> VmOut:
        """Make every write durable on the server's disk; returns when it is.

        `POST /v1/instances/{id}/vm/flush` (reference: vms-flush_vm.html)"""
        return cast("VmOut", await self._core.op("vms-flush_vm", {"id": id}, {}, None, "json"))

    async def restart_vm(self, id: str) -> InstanceOut:
        """Restart the VM: every process restarts, files stay. Returns when it is running again.

        `POST /v1/instances/{id}/vm/restart` (reference: vms-restart_vm.html)"""
        return cast(
            "InstanceOut", await self._core.op("vms-restart_vm", {"id": id}, {}, None, "json")
        )


class AsyncWebhooksApi:
    """Operations tagged `webhooks`."""

    def __init__(self, core: AsyncCore) -> None:
        self._core = core

    async def list_webhook_dead_letters(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> Page_DeliveryOut_:
        """Deliveries whose retries ran out, newest first (staff).

        `GET /v1/admin/webhooks/dlq` (reference: webhooks-list_webhook_dead_letters.html)"""
        return cast(
            "Page_DeliveryOut_",
            await self._core.op(
                "webhooks-list_webhook_dead_letters",
                {},
                {"limit": limit, "cursor": cursor},
                None,
                "json",
            ),
        )

    async def reap_webhook_dead_letters(self, body: ReapRequest) -> ReapResult:
        """Delete dead letters older than `older_than` seconds (staff).

        `POST /v1/admin/webhooks/dlq/reap` (reference: webhooks-reap_webhook_dead_letters.html)"""
        return cast(
            "ReapResult",
            await self._core.op("webhooks-reap_webhook_dead_letters", {}, {}, body, "json"),
        )

    async def retry_webhook_dead_letter(self, id: str) -> DeliveryOut:
        """Put a dead letter back on the schedule, first attempt now (staff).

        `POST /v1/admin/webhooks/dlq/{id}/retry` (reference: webhooks-retry_webhook_dead_letter.html)"""
        return cast(
            "DeliveryOut",
            await self._core.op("webhooks-retry_webhook_dead_letter", {"id": id}, {}, None, "json"),
        )

    async def process_webhook_queue(self) -> ProcessQueueResult:
        """Attempt every delivery that is due now, without waiting for the worker (staff).

        `POST /v1/admin/webhooks/process-queue` (reference: webhooks-process_webhook_queue.html)"""
        return cast(
            "ProcessQueueResult",
            await self._core.op("webhooks-process_webhook_queue", {}, {}, None, "json"),
        )

    async def list_webhooks(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> Page_Webhook_:
        """The org's webhook endpoints, newest first.

        `GET /v1/webhooks` (reference: webhooks-list_webhooks.html)"""
        return cast(
            "Page_Webhook_",
            await self._core.op(
                "webhooks-list_webhooks", {}, {"limit": limit, "cursor": cursor}, None, "json"
            ),
        )

    async def create_webhook(self, body: WebhookCreate) -> WebhookWithSecret:
        """Add an endpoint; its signing secret is in this answer only.

        `POST /v1/webhooks` (reference: webhooks-create_webhook.html)"""
        return cast(
            "WebhookWithSecret",
            await self._core.op("webhooks-create_webhook", {}, {}, body, "json"),
        )

    async def get_webhook(self, id: str) -> Webhook:
        """One endpoint.

        `GET /v1/webhooks/{id}` (reference: webhooks-get_webhook.html)"""
        return cast(
            "Webhook", await self._core.op("webhooks-get_webhook", {"id": id}, {}, None, "json")
        )

    async def update_webhook(self, id: str, body: WebhookUpdate) -> WebhookWithSecret:
        """Change an endpoint; `rotate_secret` answers with the new secret, once.

        `PATCH /v1/webhooks/{id}` (reference: webhooks-update_webhook.html)"""
        return cast(
            "WebhookWithSecret",
            await self._core.op("webhooks-update_webhook", {"id": id}, {}, body, "json"),
        )

    async def delete_webhook(self, id: str) -> None:
        """Delete an endpoint, its deliveries and their history.

        `DELETE /v1/webhooks/{id}` (reference: webhooks-delete_webhook.html)"""
        return cast(
            "None", await self._core.op("webhooks-delete_webhook", {"id": id}, {}, None, "none")
        )

    async def list_webhook_deliveries(
        self, id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> Page_WebhookAttemptOut_:
        """Every attempt to reach the endpoint, newest first.

        `GET /v1/webhooks/{id}/deliveries` (reference: webhooks-list_webhook_deliveries.html)"""
        return cast(
            "Page_WebhookAttemptOut_",
            await self._core.op(
                "webhooks-list_webhook_deliveries",
                {"id": id},
                {"limit": limit, "cursor": cursor},
                None,
                "json",
            ),
        )

    async def test_webhook(self, id: str) -> WebhookAttemptOut:
        """Send `webhook.test` to the endpoint now and answer with the attempt.

        `POST /v1/webhooks/{id}/test` (reference: webhooks-test_webhook.html)"""
        return cast(
            "WebhookAttemptOut",
            await self._core.op("webhooks-test_webhook", {"id": id}, {}, None, "json"),
        )


class AsyncApi:
    """Every operation of the API, one attribute per tag."""

    def __init__(self, core: AsyncCore) -> None:
        self.account_ssh_keys = AsyncAccountSshKeysApi(core)
        self.api_keys = AsyncApiKeysApi(core)
        self.audit = AsyncAuditApi(core)
        self.auth = AsyncAuthApi(core)
        self.base_images = AsyncBaseImagesApi(core)
        self.checkpoints = AsyncCheckpointsApi(core)
        self.compute_servers = AsyncComputeServersApi(core)
        self.events = AsyncEventsApi(core)
        self.exec = AsyncExecApi(core)
        self.files = AsyncFilesApi(core)
        self.health = AsyncHealthApi(core)
        self.instances = AsyncInstancesApi(core)
        self.internal = AsyncInternalApi(core)
        self.invitations = AsyncInvitationsApi(core)
        self.lsp = AsyncLspApi(core)
        self.members = AsyncMembersApi(core)
        self.notifications = AsyncNotificationsApi(core)
        self.orgs = AsyncOrgsApi(core)
        self.port_forwards = AsyncPortForwardsApi(core)
        self.profiles = AsyncProfilesApi(core)
        self.sessions = AsyncSessionsApi(core)
        self.snapshots = AsyncSnapshotsApi(core)
        self.ssh = AsyncSshApi(core)
        self.users = AsyncUsersApi(core)
        self.vms = AsyncVmsApi(core)
        self.webhooks = AsyncWebhooksApi(core)
