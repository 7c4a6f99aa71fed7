"""Imports every module that registers background jobs or event subscribers, so a worker knows
all handlers and `emit()` queues every subscriber of an event."""

from forkyard.events.kernel import mark_subscribers_loaded


def load_all_tasks() -> None:
    import forkyard.compute.events
    import forkyard.compute.service
    import forkyard.compute.state.images
    import forkyard.compute.state.layers
    import forkyard.events.kernel
    import forkyard.events.tasks
    import forkyard.forwards.events
    import forkyard.identity.events
    import forkyard.identity.idempotency
    import forkyard.identity.sms
    import forkyard.jobs.prune
    import forkyard.mail.sender
    import forkyard.notifications.events
    import forkyard.orgs.events
    import forkyard.webhooks.service  # noqa: F401
    from forkyard.webhooks.events import subscribe_to_catalogue

    # Last: webhooks subscribe to every catalogued type, so every domain's events come first.
    subscribe_to_catalogue()
    mark_subscribers_loaded()
