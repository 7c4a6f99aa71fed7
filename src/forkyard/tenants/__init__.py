"""Who belongs to which org: the org, membership and IP allowlist tables and the last-owner rule.

Identity reads them on every request (the principal's org and role, the allowlist) and at
sign-up, export and account deletion; orgs manages them (members, invitations, the allowlist
routes). They live here, below both, so that neither has to import the other's tables."""
