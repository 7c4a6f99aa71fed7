"""The single migration and the models agree: a fresh database migrated to head has exactly the
tables, columns and indexes the models declare."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from forkyard.db.engine import async_url
from forkyard.db.registry import metadata


def test_models_match_migrations(template_url):
    engine = create_engine(async_url(template_url))
    try:
        with engine.connect() as conn:
            diff = compare_metadata(
                MigrationContext.configure(conn, opts={"compare_type": True}), metadata
            )
    finally:
        engine.dispose()
    assert diff == [], f"models and migrations differ; run `make migration`: {diff}"
