"""Outgoing email: SMTP when configured, otherwise .eml files in the data dir's outbox."""
