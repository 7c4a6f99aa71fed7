"""Fixtures of tests/events: the org factories of tests/orgs and the compute platform."""

from tests.compute.conftest import compute_settings, control_plane, platform  # noqa: F401
from tests.orgs.conftest import orgs  # noqa: F401
