"""The audit log: append-only security events per org."""
