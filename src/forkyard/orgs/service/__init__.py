"""The rules of orgs: who may act in which org (`access`), members and the last owner
(`members`), invitations (`invitations`), the acting org's IP allowlist (`allowlist`) and
reading its audit log (`audit_log`).
Routes name the org in the path; `org_access` turns that into a checked grant."""

from forkyard.orgs.service.access import (
    OrgGrant,
    create_team_org,
    org_access,
    org_out,
    rename_org,
    require_manage,
    require_user_session,
)
from forkyard.orgs.service.allowlist import (
    MAX_ALLOWLIST_ENTRIES,
    add_allowlist_entry,
    allowlist_out,
    remove_allowlist_entry,
)
from forkyard.orgs.service.audit_log import AuditFilter, audit_event_out, audit_events
from forkyard.orgs.service.invitations import (
    INVITATIONS_PER_ORG_PER_MIN,
    accept_invitation,
    emails_match,
    invitation_out,
    invite,
    pending_invitations,
    preview_invitation,
    revoke_invitation,
    usable_invitation,
)
from forkyard.orgs.service.members import change_role, member_out, remove_member, users_by_id

__all__ = [
    "INVITATIONS_PER_ORG_PER_MIN",
    "MAX_ALLOWLIST_ENTRIES",
    "AuditFilter",
    "OrgGrant",
    "accept_invitation",
    "add_allowlist_entry",
    "allowlist_out",
    "audit_event_out",
    "audit_events",
    "change_role",
    "create_team_org",
    "emails_match",
    "invitation_out",
    "invite",
    "member_out",
    "org_access",
    "org_out",
    "pending_invitations",
    "preview_invitation",
    "remove_allowlist_entry",
    "remove_member",
    "rename_org",
    "require_manage",
    "require_user_session",
    "revoke_invitation",
    "usable_invitation",
    "users_by_id",
]
