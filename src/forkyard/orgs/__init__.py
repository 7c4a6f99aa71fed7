"""Orgs: members and roles, invitations, the IP allowlist."""
