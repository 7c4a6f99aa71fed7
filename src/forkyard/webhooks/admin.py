"""Staff: the dead-letter queue of webhook deliveries, across orgs (tag webhooks)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import select

from forkyard.db.session import DbSession
from forkyard.identity.deps import StaffPrincipal, settings_of
from forkyard.identity.routing import protected_router
from forkyard.kit.clock import utcnow
from forkyard.kit.pagination import Page, PageParams, page_params, paginate
from forkyard.webhooks import service
from forkyard.webhooks.models import WebhookDelivery
from forkyard.webhooks.schemas import DeliveryOut, ProcessQueueResult, ReapRequest, ReapResult

router = protected_router("webhooks", prefix="/v1/admin/webhooks")
# One call of process-queue sends at most this many (the rest are due on the next call).
PROCESS_QUEUE_BATCH = 200


@router.get("/dlq", response_model=Page[DeliveryOut])
async def list_webhook_dead_letters(
    session: DbSession, _: StaffPrincipal, page: Annotated[PageParams, Depends(page_params)]
) -> Page[DeliveryOut]:
    """Deliveries whose retries ran out, newest first (staff)."""
    stmt = select(WebhookDelivery).where(WebhookDelivery.status == "dead")
    rows, cursor = await paginate(session, stmt, WebhookDelivery, page)
    return Page(data=[DeliveryOut.of(d) for d in rows], next_cursor=cursor)


@router.post("/dlq/{id}/retry", response_model=DeliveryOut)
async def retry_webhook_dead_letter(id: str, session: DbSession, _: StaffPrincipal) -> DeliveryOut:
    """Put a dead letter back on the schedule, first attempt now (staff)."""
    return DeliveryOut.of(await service.retry_dead(session, id))


@router.post("/dlq/reap", response_model=ReapResult)
async def reap_webhook_dead_letters(
    body: ReapRequest, session: DbSession, _: StaffPrincipal
) -> ReapResult:
    """Delete dead letters older than `older_than` seconds (staff)."""
    cutoff = utcnow() - timedelta(seconds=body.older_than)
    return ReapResult(reaped=await service.reap_dead(session, cutoff))


@router.post("/process-queue", response_model=ProcessQueueResult)
async def process_webhook_queue(
    request: Request, session: DbSession, _: StaffPrincipal
) -> ProcessQueueResult:
    """Attempt every delivery that is due now, without waiting for the worker (staff)."""
    run = await service.process_queue(session, settings_of(request), PROCESS_QUEUE_BATCH)
    return ProcessQueueResult(attempted=run.attempted, delivered=run.delivered)
