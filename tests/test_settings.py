"""Settings: placeholder secrets refused outside development, and the README lists every setting."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from pydantic import ValidationError

from forkyard.config import PLACEHOLDER_SECRET, Settings

ROOT = Path(__file__).resolve().parents[1]


def test_placeholder_secret_is_refused_outside_development(monkeypatch):
    with pytest.raises(ValidationError, match="placeholder"):
        Settings(env="test", _env_file=None)  # type: ignore[call-arg]


def test_placeholder_secret_is_refused_in_production(monkeypatch):
    monkeypatch.delenv("FORKYARD_SECRET_KEY", raising=False)
    with pytest.raises(ValidationError, match="FORKYARD_SECRET_KEY"):
        Settings(env="production", _env_file=None)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="placeholder"):
        Settings(env="production", secret_key="s3cret-but-real", _env_file=None)  # type: ignore[call-arg]
    ok = Settings(
        env="production", secret_key="a real secret", node_token="a real token", _env_file=None
    )  # type: ignore[call-arg]
    assert ok.secret_key != PLACEHOLDER_SECRET
    assert Settings(env="development", _env_file=None).secret_key == PLACEHOLDER_SECRET  # type: ignore[call-arg]


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("FORKYARD_RATE_LIMIT_PRINCIPAL_PER_MIN", "77")
    monkeypatch.setenv("FORKYARD_CORS_ORIGINS", '["https://a.example"]')
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.rate_limit_principal_per_min == 77 and s.cors_origins == ["https://a.example"]


def test_readme_table_lists_every_setting_with_its_default():
    spec = importlib.util.spec_from_file_location(
        "settings_table", ROOT / "scripts/settings_table.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- settings:start -->")[1].split("<!-- settings:end -->")[0]
    missing = [row for row in module.rows() if f"| {row[0]} | {row[1]} |" not in block]
    assert not missing, (
        "README.md's settings table is out of date; run `python scripts/settings_table.py --write`."
        f" Missing or changed: {[r[0] for r in missing]}"
    )
    assert len(module.rows()) == len(Settings.model_fields)
