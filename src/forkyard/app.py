"""create_app(): middleware, error handlers, routers — nothing else."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from forkyard.config import Settings, ensure_secrets, get_settings
from forkyard.db.changes import changes
from forkyard.db.engine import Database
from forkyard.identity.routing import document_access, operation_id, summaries_from_docstrings
from forkyard.kit.body_limit import BodyLimitMiddleware
from forkyard.kit.http import RequestContextMiddleware, install_error_handlers
from forkyard.mcp.http import mount as mount_mcp
from forkyard.mcp.http import running as mcp_running
from forkyard.tasks import load_all_tasks
from forkyard.webhooks.catalogue import publish as publish_event_catalogue

# Routes whose bodies carry file contents take the upload limit; every other the JSON limit.
UPLOAD_ROUTES = r"/v1/instances/[^/]+/files"


def _routers() -> list[APIRouter]:
    from forkyard.compute.admin import router as compute_servers
    from forkyard.compute.consoles import terminals, watch_router
    from forkyard.compute.exec import exec_router, files_router
    from forkyard.compute.internal import router as internal
    from forkyard.compute.routes import instances, profiles, vms
    from forkyard.compute.state.routers import routers as state_routers
    from forkyard.forwards.routes import router as port_forwards
    from forkyard.forwards.routes import tunnels as port_tunnels
    from forkyard.health.routes import router as health
    from forkyard.identity.account_routers import routers as account_routers
    from forkyard.identity.api_keys import router as api_keys
    from forkyard.identity.routes import public as auth_public
    from forkyard.identity.routes import router as auth
    from forkyard.identity.sessions import router as sessions
    from forkyard.identity.users import router as users
    from forkyard.lsp.routes import routers as lsp_routers
    from forkyard.notifications.routes import router as notifications
    from forkyard.orgs.event_routes import router as events
    from forkyard.orgs.routes import routers as org_routers
    from forkyard.ssh.routes import router as ssh
    from forkyard.webhooks.admin import router as webhooks_admin
    from forkyard.webhooks.routes import router as webhooks

    return [
        health,
        auth_public,
        auth,
        sessions,
        api_keys,
        users,
        *org_routers,
        *account_routers,
        instances,
        vms,
        exec_router,
        files_router,
        watch_router,
        terminals,
        ssh,
        profiles,
        compute_servers,
        internal,
        *state_routers,
        events,
        webhooks,
        webhooks_admin,
        notifications,
        port_forwards,
        port_tunnels,
        *lsp_routers,
    ]


def create_app(
    settings: Settings | None = None, db: Database | None = None, *, ssh_gateway: bool = False
) -> FastAPI:
    """`ssh_gateway`: this process also runs the SSH gateway (`serve` does; ssh/gateway.py)."""
    settings = ensure_secrets(settings or get_settings())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned_db = app.state.db is None
        if owned_db:
            if not settings.database_url:
                raise RuntimeError("FORKYARD_DATABASE_URL is not set (forkyard serve sets it)")
            app.state.db = Database(settings.database_url, pool_size=settings.db_pool_size)
        app.state.db.info["secret_key"] = settings.secret_key
        # The hot-path caches (API keys, instance routes) work only while this listens.
        change_feed = asyncio.create_task(changes.run(app.state.db.url))
        worker_task = None
        worker = None
        # Every subscriber registered before any request emits an event (also without a worker
        # here: the jobs emit() queues are run by another process).
        load_all_tasks()
        if settings.run_worker_in_api:
            from forkyard.jobs.worker import Worker

            worker = Worker(app.state.db, settings, concurrency=settings.worker_concurrency)
            worker_task = asyncio.create_task(worker.run())
        if ssh_gateway and settings.ssh_enabled:
            from forkyard.ssh.gateway import SshGateway

            app.state.ssh_gateway = SshGateway(settings, app.state.db)
            await app.state.ssh_gateway.start()
        app.state.started = True
        try:
            async with mcp_running(app.state.mcp):
                yield
        finally:
            app.state.started = False
            if app.state.ssh_gateway is not None:
                await app.state.ssh_gateway.close()
                app.state.ssh_gateway = None
            change_feed.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await change_feed
            if worker is not None and worker_task is not None:
                worker.stop()
                await worker_task
            if owned_db:
                await app.state.db.dispose()

    app = FastAPI(
        title="Forkyard API",
        version="0.1.0",
        description="Isolated Linux instances to create, run, checkpoint, fork and reach.",
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
    )
    app.state.settings = settings
    app.state.db = db
    app.state.started = False
    app.state.ssh_gateway = None
    install_error_handlers(app)
    for router in _routers():
        app.include_router(router)
    app.state.mcp = mount_mcp(app)  # /mcp: the MCP server over streamable HTTP
    # The event catalogue, as the OpenAPI document's `webhooks` (every domain's events loaded).
    load_all_tasks()
    publish_event_catalogue(app)
    summaries_from_docstrings(app.routes)
    document_access(app.routes)
    # The generated reference (make docs), beside the interactive /docs.
    from forkyard.reference.serve import ReferenceSite

    app.mount("/reference", ReferenceSite(app, settings.data_dir / "reference"))
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=True,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Request-Id", "Retry-After"],
        )
    from forkyard.identity.idempotency import IdempotencyMiddleware

    app.add_middleware(IdempotencyMiddleware)
    # Outside idempotency, which buffers bodies; inside the request id, which the 413 carries.
    app.add_middleware(
        BodyLimitMiddleware,
        default_max=settings.max_json_body_bytes,
        larger=[(UPLOAD_ROUTES, settings.max_upload_body_bytes)],
    )
    app.add_middleware(RequestContextMiddleware)
    from forkyard.forwards.proxy import PreviewProxy

    # Outermost: a preview host's requests belong to the app inside the instance, not the API.
    app.add_middleware(PreviewProxy)
    return app
