"""The errors of webhooks (codes documented in README's Webhooks section)."""

from __future__ import annotations

from forkyard.kit.errors import Conflict, ForkyardError, QuotaExceeded


class WebhookUrlRefused(ForkyardError):
    """Not https (outside development), or resolving to an address webhooks may not reach."""

    status_code = 422
    code = "webhook_url_refused"
    message = "This URL cannot receive webhooks."


class TooManyWebhooks(QuotaExceeded):
    code = "webhook_limit_reached"
    message = "This org has as many webhook endpoints as it may."


class WebhookDisabled(Conflict):
    code = "webhook_disabled"
    message = "The webhook endpoint is disabled; enable it first."


class NotDeadLettered(Conflict):
    code = "delivery_not_dead_lettered"
    message = "Only a delivery in the dead-letter queue can be retried."
