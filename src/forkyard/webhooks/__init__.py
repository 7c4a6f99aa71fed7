"""Webhooks: an org's endpoints, signed deliveries of its events (Standard Webhooks) with
retries and a dead-letter queue (docs/adr/0016-webhooks.md)."""
