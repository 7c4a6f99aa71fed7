"""The node's HTTP API, one router per area; node/server.py assembles them (ADR 0012)."""
