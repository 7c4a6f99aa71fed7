"""The contract: docs/openapi.snapshot.json matches the live schema; every operation has a
summary, a deterministic unique operationId and a tag from the API reference's groups."""

from __future__ import annotations

import json
from pathlib import Path

from forkyard.app import create_app
from forkyard.config import Settings

SNAPSHOT = Path(__file__).resolve().parents[1] / "docs" / "openapi.snapshot.json"

# The group names of shared/api-reference.txt (tags must be one of these).
REFERENCE_GROUPS = frozenset(
    [
        "account_ssh_keys",
        "admin_agent_conversations",
        "admin_matrix",
        "admin_org_detail",
        "admin_orgs",
        "admin_overview",
        "admin_parallel_runs",
        "admin_seeds",
        "admin_simulations",
        "admin_stripe",
        "admin_system",
        "agent",
        "api_keys",
        "audit",
        "auth",
        "base_images",
        "billing",
        "checkpoints",
        "compute_servers",
        "credit_grants",
        "entitlements",
        "events",
        "exec",
        "files",
        "haywire",
        "health",
        "instances",
        "internal",
        "invitations",
        "lsp",
        "members",
        "notifications",
        "orgs",
        "parallel",
        "port_forwards",
        "probes",
        "profiles",
        "sessions",
        "snapshots",
        "ssh",
        "usage",
        "users",
        "vm_admin",
        "vms",
        "webhooks",
    ]
)
METHODS = {"get", "post", "put", "patch", "delete"}


def live_schema() -> dict:  # type: ignore[type-arg]
    return create_app(Settings(env="development")).openapi()


def _operations(schema: dict) -> list[tuple[str, str, dict]]:  # type: ignore[type-arg]
    return [
        (method, path, op)
        for path, item in schema["paths"].items()
        for method, op in item.items()
        if method in METHODS
    ]


def test_snapshot_matches_the_live_schema():
    live = json.loads(json.dumps(live_schema(), sort_keys=True))
    committed = json.loads(SNAPSHOT.read_text())
    if live == committed:
        return
    live_ops = {f"{m.upper()} {p}" for m, p, _ in _operations(live)}
    old_ops = {f"{m.upper()} {p}" for m, p, _ in _operations(committed)}
    lines = [f"+ {o}" for o in sorted(live_ops - old_ops)]
    lines += [f"- {o}" for o in sorted(old_ops - live_ops)]
    changed = [
        f"~ {m.upper()} {p}"
        for m, p, op in _operations(live)
        if f"{m.upper()} {p}" in old_ops and committed["paths"][p][m] != op
    ]
    schemas = sorted(
        set(live.get("components", {}).get("schemas", {}))
        ^ set(committed.get("components", {}).get("schemas", {}))
    )
    lines += changed + [f"schema added/removed: {', '.join(schemas)}"] * bool(schemas)
    raise AssertionError(
        "docs/openapi.snapshot.json is out of date; run `make openapi` and commit it.\n"
        + "\n".join(lines[:60] or ["(only details differ: components or metadata)"])
    )


def test_every_operation_has_summary_tag_and_unique_deterministic_id():
    schema = live_schema()
    again = live_schema()
    ids: dict[str, str] = {}
    for method, path, op in _operations(schema):
        where = f"{method.upper()} {path}"
        assert op.get("summary") and op["summary"] != op.get("operationId"), where
        assert "\n" not in op["summary"], where
        assert len(op.get("tags", [])) == 1 and op["tags"][0] in REFERENCE_GROUPS, (
            where,
            op.get("tags"),
        )
        op_id = op["operationId"]
        assert op_id not in ids, f"{where} and {ids[op_id]} share operationId {op_id}"
        ids[op_id] = where
        assert again["paths"][path][method]["operationId"] == op_id
    assert len(ids) > 30


def test_summaries_come_from_docstrings():
    schema = live_schema()
    op = schema["paths"]["/v1/auth/me"]["get"]
    assert op["summary"] == "The signed-in user's account."
    live = schema["paths"]["/health/live"]["get"]
    assert live["summary"] == "Cheapest possible probe — process is up."
