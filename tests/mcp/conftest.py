"""Fixtures of tests/mcp: the compute tests' live platform."""

from tests.compute.conftest import compute_settings, control_plane, platform  # noqa: F401
