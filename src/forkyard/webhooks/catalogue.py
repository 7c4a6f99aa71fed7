"""The event catalogue in the OpenAPI document's `webhooks` section: one entry per event type
and version, with the exact body a delivery carries ({type, timestamp, data}), so the reference
and the SDKs show every payload."""

from typing import Any, Literal

from fastapi import FastAPI
from pydantic import BaseModel, Field, create_model

from forkyard.events import Actor, Event
from forkyard.webhooks.events import public_event_types

HEADERS_DOC = (
    "Signed per Standard Webhooks: `webhook-id` (the delivery's id, the same on every retry),"
    " `webhook-timestamp` (Unix seconds), `webhook-signature` (`v1,<base64 HMAC-SHA256>`, one per"
    " live secret, space-separated). Answer 2xx within 10 s."
)


def _camel(event_type: str) -> str:
    return "".join(part.capitalize() for part in event_type.replace("_", ".").split("."))


def _body_model(cls: type[Event]) -> type[BaseModel]:
    name = _camel(cls.type) + (f"V{cls.version}" if cls.version > 1 else "")
    payload_fields: dict[str, Any] = {
        field: (info.annotation, info)
        for field, info in cls.model_fields.items()
        if field not in cls.ENVELOPE
    }
    payload = create_model(f"{name}Payload", **payload_fields)
    data = create_model(
        f"{name}Data",
        id=(str, Field(description="The event's id (evt_...), as in GET /v1/events/{id}.")),
        type=(Literal[cls.type], ...),  # type: ignore[arg-type]
        version=(Literal[cls.version], ...),  # type: ignore[arg-type]
        created_at=(str, Field(description="RFC 3339, UTC.")),
        org_id=(str | None, ...),
        resource_type=(Literal[cls.resource_type], ...),  # type: ignore[arg-type]
        resource_id=(str, ...),
        actor=(Actor, ...),
        payload=(payload, ...),
    )
    return create_model(
        f"{name}Webhook",
        type=(Literal[cls.type], ...),  # type: ignore[arg-type]
        timestamp=(str, Field(description="When it happened, RFC 3339, UTC.")),
        data=(data, ...),
    )


def publish(app: FastAPI) -> None:
    """Add every catalogued event to `app.webhooks` (after the domains' events are imported)."""
    for cls in public_event_types():
        model = _body_model(cls)
        name = cls.type if cls.version == 1 else f"{cls.type}.v{cls.version}"

        async def receive(body: Any) -> None:
            pass

        receive.__annotations__ = {"body": model, "return": None}
        doc = " ".join((cls.__doc__ or "").split()) if "__doc__" in cls.__dict__ else ""
        summary = doc.split(". ")[0].rstrip(".") if doc else f"The {cls.type} event"
        app.webhooks.add_api_route(
            name,
            receive,
            methods=["POST"],
            name=cls.type.replace(".", "_") + (f"_v{cls.version}" if cls.version > 1 else ""),
            tags=["webhooks"],
            summary=summary,
            description=f"{doc}\n\n{HEADERS_DOC}" if doc else HEADERS_DOC,
            status_code=200,
            operation_id=f"webhooks-event-{name}",
        )
