"""The audit log: append-only security events per org. A kernel below every domain that
records (the table and `record`): it knows no caller's types, only the small protocols in
`service`. The org's audit-log route is the org's (forkyard.orgs.routes)."""
