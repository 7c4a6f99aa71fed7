"""Alembic environment: runs migrations on a synchronous psycopg 3 connection."""

from alembic import context
from sqlalchemy import create_engine, pool

from forkyard.db.registry import metadata

config = context.config


def run_migrations_online() -> None:
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "", poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
