"""An org's webhook endpoints and their deliveries (tag webhooks)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import select

from forkyard.audit.service import record
from forkyard.db.session import DbSession
from forkyard.db.tenancy import owned
from forkyard.events import Actor
from forkyard.identity.deps import OrgAdmin, Reader, settings_of
from forkyard.identity.routing import protected_router
from forkyard.kit.pagination import Page, PageParams, page_params, paginate
from forkyard.kit.ratelimit import limiter
from forkyard.webhooks import service
from forkyard.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from forkyard.webhooks.schemas import (
    Webhook,
    WebhookAttemptOut,
    WebhookCreate,
    WebhookUpdate,
    WebhookWithSecret,
)

router = protected_router("webhooks", prefix="/v1/webhooks")


@router.get("", response_model=Page[Webhook])
async def list_webhooks(
    session: DbSession, principal: Reader, page: Annotated[PageParams, Depends(page_params)]
) -> Page[Webhook]:
    """The org's webhook endpoints, newest first."""
    stmt = owned(select(WebhookEndpoint), principal)
    rows, cursor = await paginate(session, stmt, WebhookEndpoint, page)
    return Page(data=[Webhook.of(e) for e in rows], next_cursor=cursor)


@router.post("", status_code=201, response_model=WebhookWithSecret)
async def create_webhook(
    body: WebhookCreate, request: Request, session: DbSession, principal: OrgAdmin
) -> WebhookWithSecret:
    """Add an endpoint; its signing secret is in this answer only."""
    assert principal.org_id is not None
    endpoint, secret = await service.create_endpoint(
        session,
        settings_of(request),
        principal.org_id,
        url=body.url,
        description=body.description,
        event_types=body.event_types,
        enabled=body.enabled,
        created_by=principal.user_id,
    )
    await record(
        session,
        "webhook.created",
        principal=principal,
        target_type="webhook",
        target_id=endpoint.id,
        data={"url": body.url},
    )
    return WebhookWithSecret(**Webhook.of(endpoint).model_dump(), secret=secret)


@router.get("/{id}", response_model=Webhook)
async def get_webhook(id: str, session: DbSession, principal: Reader) -> Webhook:
    """One endpoint."""
    return Webhook.of(await service.get_endpoint(session, principal.org_id, id))


@router.patch("/{id}", response_model=WebhookWithSecret)
async def update_webhook(
    id: str, body: WebhookUpdate, request: Request, session: DbSession, principal: OrgAdmin
) -> WebhookWithSecret:
    """Change an endpoint; `rotate_secret` answers with the new secret, once."""
    endpoint = await service.get_endpoint(session, principal.org_id, id)
    changes = body.model_dump(exclude_unset=True)
    secret = await service.update_endpoint(session, settings_of(request), endpoint, changes)
    await record(
        session,
        "webhook.updated",
        principal=principal,
        target_type="webhook",
        target_id=endpoint.id,
        data={"fields": sorted(changes)},
    )
    return WebhookWithSecret(**Webhook.of(endpoint).model_dump(), secret=secret)


@router.delete("/{id}", status_code=204)
async def delete_webhook(id: str, session: DbSession, principal: OrgAdmin) -> None:
    """Delete an endpoint, its deliveries and their history."""
    endpoint = await service.get_endpoint(session, principal.org_id, id)
    await session.delete(endpoint)
    await record(
        session, "webhook.deleted", principal=principal, target_type="webhook", target_id=id
    )


@router.get("/{id}/deliveries", response_model=Page[WebhookAttemptOut])
async def list_webhook_deliveries(
    id: str,
    session: DbSession,
    principal: Reader,
    page: Annotated[PageParams, Depends(page_params)],
) -> Page[WebhookAttemptOut]:
    """Every attempt to reach the endpoint, newest first."""
    endpoint = await service.get_endpoint(session, principal.org_id, id)
    stmt = select(WebhookAttempt).where(WebhookAttempt.endpoint_id == endpoint.id)
    rows, cursor = await paginate(session, stmt, WebhookAttempt, page)
    ids = {a.delivery_id for a in rows}
    deliveries = {
        d.id: d
        for d in (
            await session.execute(select(WebhookDelivery).where(WebhookDelivery.id.in_(ids)))
        ).scalars()
    }
    return Page(
        data=[WebhookAttemptOut.of(a, deliveries[a.delivery_id]) for a in rows],
        next_cursor=cursor,
    )


@router.post("/{id}/test", response_model=WebhookAttemptOut)
async def test_webhook(
    id: str, request: Request, session: DbSession, principal: OrgAdmin
) -> WebhookAttemptOut:
    """Send `webhook.test` to the endpoint now and answer with the attempt."""
    endpoint = await service.get_endpoint(session, principal.org_id, id)
    # It makes us send a request wherever the URL points: limited per org.
    limiter.hit(f"webhook-test:{endpoint.org_id}", settings_of(request).webhooks_test_per_min)
    made = await service.send_test(session, settings_of(request), endpoint, Actor.of(principal))
    delivery = await session.get(WebhookDelivery, made.delivery_id)
    assert delivery is not None
    return WebhookAttemptOut.of(made, delivery)
