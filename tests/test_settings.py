"""Settings: placeholder secrets refused outside development, and the README lists every setting."""

from __future__ import annotations

import importlib.util
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from forkyard.config import PLACEHOLDER_SECRET, Settings, ensure_secrets

ROOT = Path(__file__).resolve().parents[1]


def test_the_known_placeholder_is_refused_outside_development(monkeypatch):
    with pytest.raises(ValidationError, match="placeholder"):
        Settings(env="test", secret_key=PLACEHOLDER_SECRET, _env_file=None)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="FORKYARD_NODE_TOKEN"):
        Settings(env="production", node_token=PLACEHOLDER_SECRET, _env_file=None)  # type: ignore[call-arg]


def test_unset_secrets_are_generated_once_and_kept_private(monkeypatch, tmp_path):
    monkeypatch.delenv("FORKYARD_SECRET_KEY", raising=False)
    monkeypatch.delenv("FORKYARD_NODE_TOKEN", raising=False)
    first = ensure_secrets(Settings(env="production", data_dir=tmp_path, _env_file=None))  # type: ignore[call-arg]
    assert len(first.secret_key) >= 48 and first.secret_key != PLACEHOLDER_SECRET
    assert first.node_token and first.node_token != first.secret_key
    for name in ("secret-key", "node-token"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    # The next start (another process) reads the same values.
    again = ensure_secrets(Settings(env="production", data_dir=tmp_path, _env_file=None))  # type: ignore[call-arg]
    assert (again.secret_key, again.node_token) == (first.secret_key, first.node_token)
    # Another installation gets its own.
    other = ensure_secrets(Settings(data_dir=tmp_path / "b", _env_file=None))  # type: ignore[call-arg]
    assert other.secret_key != first.secret_key
    # A secret that is set is never replaced.
    given = ensure_secrets(Settings(secret_key="mine", data_dir=tmp_path / "c", _env_file=None))  # type: ignore[call-arg]
    assert given.secret_key == "mine"


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
