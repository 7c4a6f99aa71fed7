"""Health probes (public): live is free; ready checks the database, migrations and the worker."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from alembic.runtime.migration import MigrationContext
from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import func, select, text

from forkyard.db.engine import Database
from forkyard.db.migrate import head_revision
from forkyard.identity.routing import public_router
from forkyard.jobs.models import WorkerHeartbeat
from forkyard.kit.clock import utcnow

router = public_router("health")


class HealthStatus(BaseModel):
    status: str
    checks: dict[str, Any]


@router.get("/health", response_model=HealthStatus)
async def health(request: Request) -> JSONResponse:
    """Overall health: the readiness checks with their details."""
    return await _readiness(request)


@router.get("/health/live", response_model=HealthStatus)
async def health_live() -> HealthStatus:
    """Cheapest possible probe — process is up."""
    return HealthStatus(status="ok", checks={})


@router.get("/health/ready", response_model=HealthStatus)
async def health_ready(request: Request) -> JSONResponse:
    """Ready to serve: database reachable, migrations current, worker heartbeat fresh."""
    return await _readiness(request)


@router.get("/health/startup", response_model=HealthStatus)
async def health_startup(request: Request) -> JSONResponse:
    """Startup finished: migrations applied and background services launched."""
    started = bool(getattr(request.app.state, "started", False))
    if not started:
        return _not_ready(request, ["started"], {"started": {"ok": False}})
    return JSONResponse({"status": "ok", "checks": {"started": {"ok": True}}})


async def _readiness(request: Request) -> JSONResponse:
    db: Database = request.app.state.db
    stale_after = timedelta(seconds=request.app.state.settings.worker_heartbeat_stale_s)
    checks: dict[str, Any] = {}
    try:
        async with db.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            checks["database"] = {"ok": True}
            current = await conn.run_sync(
                lambda sync_conn: MigrationContext.configure(sync_conn).get_current_revision()
            )
            head = head_revision()
            checks["migrations"] = {"ok": current == head, "current": current, "head": head}
            last_seen = (await conn.execute(select(func.max(WorkerHeartbeat.last_seen)))).scalar()
            fresh = last_seen is not None and utcnow() - last_seen <= stale_after
            checks["worker"] = {
                "ok": fresh,
                "last_heartbeat": last_seen.isoformat() if last_seen else None,
            }
    except Exception:
        checks.setdefault("database", {"ok": False})
    failing = [name for name, check in checks.items() if not check.get("ok")]
    for name in ("database", "migrations", "worker"):
        if name not in checks:
            failing.append(name)
            checks[name] = {"ok": False}
    if not failing:
        return JSONResponse({"status": "ok", "checks": checks})
    return _not_ready(request, sorted(set(failing)), checks)


def _not_ready(request: Request, failing: list[str], checks: dict[str, Any]) -> JSONResponse:
    """503 in the documented error shape, naming the failing checks."""
    return JSONResponse(
        {
            "error": {
                "code": "not_ready",
                "message": f"Not ready: {', '.join(failing)}.",
                "request_id": getattr(request.state, "request_id", ""),
                "details": {"failing": failing, "checks": checks},
            }
        },
        status_code=503,
    )
