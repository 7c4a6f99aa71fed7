"""Org errors with stable codes."""

from forkyard.kit.errors import Conflict, Forbidden, ForkyardError

__all__ = [
    "AllowlistEntryExists",
    "AllowlistFull",
    "AlreadyMember",
    "InvitationEmailMismatch",
    "InvitationExpired",
    "InvitationRevoked",
    "InvitationUsed",
    "OwnerRequired",
    "PersonalOrg",
    "WouldLockOut",
]


class OwnerRequired(Forbidden):
    code = "owner_required"
    message = "Only an org owner can grant or take away the owner role."


class PersonalOrg(Conflict):
    code = "personal_org"
    message = "A personal org has one member; create a team org to invite people."


class AlreadyMember(Conflict):
    code = "already_member"
    message = "This person is already a member of the org."


class Gone(ForkyardError):
    status_code = 410
    code = "gone"


class InvitationExpired(Gone):
    code = "invitation_expired"
    message = "This invitation has expired; ask an org admin for a new one."


class InvitationRevoked(Gone):
    code = "invitation_revoked"
    message = "This invitation was revoked; ask an org admin for a new one."


class InvitationUsed(Conflict):
    code = "invitation_used"
    message = "This invitation was already accepted."


class InvitationEmailMismatch(Forbidden):
    code = "invitation_email_mismatch"
    message = "This invitation was sent to a different email address than your account's."


class AllowlistEntryExists(Conflict):
    code = "allowlist_entry_exists"
    message = "This range is already on the org's IP allowlist."


class AllowlistFull(Conflict):
    code = "allowlist_full"
    message = "The org's IP allowlist is full; remove an entry first."


class WouldLockOut(Conflict):
    code = "would_lock_out"
    message = (
        "This change would block your own address from the org; "
        "repeat it with confirm_lockout: true if you mean it."
    )
