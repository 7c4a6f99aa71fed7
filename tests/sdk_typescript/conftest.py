"""The TypeScript SDK's tests: node and its npm packages (make install runs npm ci), and the
compute tests' live platform."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.compute.conftest import compute_settings, control_plane, platform  # noqa: F401

SDK = Path(__file__).resolve().parents[2] / "sdk" / "typescript"


def node_tools() -> None:
    if shutil.which("node") is None or not (SDK / "node_modules" / "typescript").is_dir():
        pytest.skip("node, or the SDK's npm packages (make install runs npm ci), are missing")


@pytest.fixture(scope="session")
def built_sdk() -> Path:
    """sdk/typescript/dist, built now from src."""
    node_tools()
    subprocess.run(["npm", "run", "-s", "build"], cwd=SDK, check=True, timeout=120)
    return SDK / "dist"
