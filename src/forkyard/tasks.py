"""Imports every module that registers background jobs, so a worker knows all handlers."""


def load_all_tasks() -> None:
    import forkyard.compute.service
    import forkyard.compute.state.images
    import forkyard.compute.state.layers
    import forkyard.identity.sms
    import forkyard.jobs.prune
    import forkyard.kit.idempotency
    import forkyard.mail.sender  # noqa: F401
