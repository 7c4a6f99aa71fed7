"""Reading the OpenAPI snapshot: operations in the order of the user's reference index, schema
references resolved, and example values made up from a schema."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
SNAPSHOT = ROOT / "docs" / "openapi.snapshot.json"

# The tags of the user's reference index (shared/api-reference.txt), in its order. Tags the
# snapshot carries that the index lacks come after these, alphabetically.
TAG_ORDER = [
    "account_ssh_keys", "admin_agent_conversations", "admin_matrix", "admin_org_detail",
    "admin_orgs", "admin_overview", "admin_parallel_runs", "admin_seeds", "admin_simulations",
    "admin_stripe", "admin_system", "agent", "api_keys", "audit", "auth", "base_images",
    "billing", "checkpoints", "compute_servers", "credit_grants", "entitlements", "events",
    "exec", "files", "haywire", "health", "instances", "internal", "invitations", "lsp",
    "members", "notifications", "orgs", "parallel", "port_forwards", "probes", "profiles",
    "sessions", "snapshots", "ssh", "usage", "users", "vm_admin", "vms", "webhooks",
]  # fmt: skip

METHODS = ("get", "post", "put", "patch", "delete")


@dataclass
class Param:
    name: str
    location: str  # path, query, header
    required: bool
    schema: dict[str, Any]
    description: str


@dataclass
class Operation:
    id: str
    method: str
    path: str
    tag: str
    summary: str
    description: str
    auth: str
    params: list[Param]
    body_schema: dict[str, Any] | None
    body_required: bool
    responses: dict[str, dict[str, Any]]
    raw: dict[str, Any] = field(repr=False)

    @property
    def slug(self) -> str:
        """The operation id as a file name: stable links per operation."""
        return re.sub(r"[^A-Za-z0-9_.-]", "_", self.id)

    @property
    def method_name(self) -> str:
        """The SDK's method for it: the operation id after its tag."""
        name = self.id.split("-", 1)[-1]
        return re.sub(r"\W", "_", name)

    @property
    def path_params(self) -> list[Param]:
        return [p for p in self.params if p.location == "path"]

    @property
    def query_params(self) -> list[Param]:
        return [p for p in self.params if p.location == "query"]

    def success(self) -> tuple[str, str | None, dict[str, Any] | None]:
        """The first 2xx (or 3xx) answer: status, content type, schema."""
        for status in sorted(self.responses):
            if status.startswith(("2", "3")):
                content = self.responses[status].get("content") or {}
                for ctype, media in content.items():
                    return status, ctype, media.get("schema")
                return status, None, None
        return "200", None, None


def load(path: Path = SNAPSHOT) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def tag_rank(tag: str) -> tuple[int, str]:
    return (TAG_ORDER.index(tag), tag) if tag in TAG_ORDER else (len(TAG_ORDER), tag)


def operations(spec: dict[str, Any]) -> list[Operation]:
    """Every operation, grouped by tag in the index's order, then by path and method."""
    ops: list[Operation] = []
    for path, item in spec.get("paths", {}).items():
        for method in METHODS:
            raw = item.get(method)
            if raw is None:
                continue
            body = raw.get("requestBody")
            body_schema = None
            if body:
                content = body.get("content", {})
                media: dict[str, Any] = content.get("application/json") or next(
                    iter(content.values()), {}
                )
                body_schema = media.get("schema")
            description = raw.get("description", "")
            ops.append(
                Operation(
                    id=raw["operationId"],
                    method=method.upper(),
                    path=path,
                    tag=(raw.get("tags") or ["default"])[0],
                    summary=raw.get("summary", ""),
                    description=description,
                    auth=raw.get("x-forkyard-auth", "public"),
                    params=[
                        Param(
                            p["name"],
                            p["in"],
                            bool(p.get("required")),
                            p.get("schema", {}),
                            p.get("description", ""),
                        )
                        for p in raw.get("parameters", [])
                    ],
                    body_schema=body_schema,
                    body_required=bool(body and body.get("required")),
                    responses=raw.get("responses", {}),
                    raw=raw,
                )
            )
    ops.sort(key=lambda o: (tag_rank(o.tag), o.path, METHODS.index(o.method.lower())))
    return ops


def resolve(spec: dict[str, Any], schema: dict[str, Any] | None) -> dict[str, Any]:
    """Follow a `$ref` (only one level: nested refs stay for the caller to follow)."""
    if not schema:
        return {}
    ref = schema.get("$ref")
    if ref:
        name = ref.rsplit("/", 1)[-1]
        resolved: dict[str, Any] = spec["components"]["schemas"][name]
        return resolved
    return schema


def ref_name(schema: dict[str, Any] | None) -> str | None:
    if schema and "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    return None


def non_null(schema: dict[str, Any]) -> dict[str, Any]:
    """`X | None` written as anyOf: the X."""
    options = schema.get("anyOf")
    if options:
        rest = [o for o in options if o.get("type") != "null"]
        if len(rest) == 1:
            return {**{k: v for k, v in schema.items() if k != "anyOf"}, **rest[0]}
    return schema


# Example values for common field names, so samples read like real calls.
NAMED_EXAMPLES: dict[str, Any] = {
    "memory_mb": 512, "disk_mb": 1024, "vcpus": 1, "command": "uname -a", "count": 2,
    "path": "/root/hello.txt", "content": "hello\n", "old_str": "hello", "new_str": "hi",
    "name": "example", "email": "you@example.com", "password": "correct horse battery",
    "image": "default", "checkpoint_id": "ckpt_01J0000000000000000000000", "timeout_s": 30,
}  # fmt: skip

ID_PREFIXES = {
    "instance": "inst", "checkpoint": "ckpt", "snapshot": "snap", "org": "org", "user": "usr",
    "key": "key", "image": "img", "profile": "prof", "server": "srv", "session": "sess",
    "entry": "ipa", "inv": "inv", "factor": "mfa", "forward": "pf",
}  # fmt: skip


def example_id(name: str, path: str) -> str:
    """A plausible id for a path parameter; a bare `{id}` takes the prefix of the collection
    just before it (`/v1/instances/{id}` -> `inst_...`)."""
    stem = name.removesuffix("_id")
    if stem == "id":
        segments = path.split("/")
        at = segments.index("{id}") if "{id}" in segments else len(segments)
        before = segments[at - 1] if at > 0 else "id"
        stem = before.removesuffix("s")
        stem = {"base-image": "image", "api-key": "key", "ssh-key": "key"}.get(stem, stem)
    if stem in ("provider", "family", "token", "slug"):
        return {"provider": "github", "family": "default", "token": "TOKEN", "slug": "pro"}[stem]
    prefix = ID_PREFIXES.get(stem, stem[:4])
    return f"{prefix}_01J0000000000000000000000"


def example(
    spec: dict[str, Any], schema: dict[str, Any] | None, name: str = "", depth: int = 0
) -> Any:
    """A value that fits the schema: its example or default, a named example, or a made-up one."""
    if schema is None or depth > 6:
        return None
    if "$ref" in schema:
        return example(spec, resolve(spec, schema), name, depth + 1)
    schema = non_null(schema)
    if schema.get("examples"):
        return schema["examples"][0]
    if "example" in schema:
        return schema["example"]
    if name in NAMED_EXAMPLES and schema.get("type") in ("string", "integer", "number", None):
        value = NAMED_EXAMPLES[name]
        if schema.get("type") != "string" or isinstance(value, str):
            return value
    if "default" in schema and schema["default"] is not None:
        return schema["default"]
    if "enum" in schema:
        return schema["enum"][0]
    if "anyOf" in schema:
        return example(spec, schema["anyOf"][0], name, depth + 1)
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        if not props:
            extra = schema.get("additionalProperties")
            if isinstance(extra, dict) and extra:
                return {"key": example(spec, extra, "", depth + 1)}
            return {}
        return {k: example(spec, v, k, depth + 1) for k, v in props.items()}
    if kind == "array":
        item = example(spec, schema.get("items"), name, depth + 1)
        return [] if item is None else [item]
    if kind == "string":
        fmt = schema.get("format")
        if fmt == "date-time":
            return "2026-01-01T00:00:00Z"
        if name == "id" or name.endswith("_id"):
            return example_id(name, "")
        if name.endswith("email"):
            return "you@example.com"
        return "string"
    if kind == "integer":
        return max(int(schema.get("minimum", 0)), 1)
    if kind == "number":
        return 1.0
    if kind == "boolean":
        return False
    return None


def required_example(spec: dict[str, Any], schema: dict[str, Any] | None) -> dict[str, Any]:
    """A request body with its required fields, plus the ones samples read better with."""
    resolved = resolve(spec, schema)
    props = resolved.get("properties", {})
    required = set(resolved.get("required", []))
    keep = required | {k for k in props if k in NAMED_EXAMPLES and k not in ("name", "password")}
    if not keep and props:
        keep = {next(iter(props))}
    return {k: example(spec, v, k) for k, v in props.items() if k in keep}
