"""Apply and inspect Alembic migrations from code (no alembic.ini needed)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from forkyard.db.engine import async_url, libpq_url

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", async_url(database_url).replace("%", "%%"))
    return cfg


def upgrade(database_url: str) -> None:
    """Alembic to head, then the repeatable scripts (functions and triggers, which Alembic's
    autogenerate does not see), each run whole, every time, in name order."""
    command.upgrade(alembic_config(database_url), "head")
    import psycopg

    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        for script in sorted((MIGRATIONS_DIR / "repeatable").glob("*.sql")):
            conn.execute(script.read_text().encode())


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("postgresql://x/y")).get_current_head()


def current_revision(database_url: str) -> str | None:
    engine = create_engine(async_url(database_url))
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
