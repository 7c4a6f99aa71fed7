"""The app as a whole: deny by default, the error shape on every kind of failure, request ids and
security headers, and no route that answers 500 to an unknown or wrong-prefix id."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.routing import APIRoute, APIWebSocketRoute
from httpx import ASGITransport, AsyncClient

from forkyard.kit.ids import new_id
from tests.helpers import PASSWORD, error_code, make_account

# The short public list: everything else must answer 401 to a caller without credentials.
PUBLIC = {
    ("GET", "/health"),
    ("GET", "/health/live"),
    ("GET", "/health/ready"),
    ("GET", "/health/startup"),
    ("POST", "/v1/auth/signup"),
    ("GET", "/v1/auth/verify-email"),
    ("POST", "/v1/auth/login"),
    ("POST", "/v1/auth/refresh"),
    ("POST", "/v1/auth/logout"),
    ("POST", "/v1/auth/forgot-password"),
    ("POST", "/v1/auth/reset-password"),
    # Second step of a sign-in (the challenge token is the credential).
    ("GET", "/v1/auth/login/mfa/state"),
    ("POST", "/v1/auth/login/mfa"),
    ("POST", "/v1/auth/login/mfa/send-code"),
    ("POST", "/v1/auth/login/mfa/webauthn/begin"),
    ("POST", "/v1/auth/login/mfa/webauthn/finish"),
    ("POST", "/v1/auth/login/magic-link/request"),
    ("GET", "/v1/auth/login/magic-link/consume"),
    ("POST", "/v1/auth/recovery/request"),
    ("POST", "/v1/auth/recovery/complete"),
    ("GET", "/v1/auth/oauth/providers"),
    ("GET", "/v1/auth/oauth/{provider}"),
    ("GET", "/v1/auth/oauth/{provider}/callback"),
    # The contract and its viewers.
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
}

# Plausible ids for path parameters, by name (and by the collection for a bare `{id}`).
PARAM_PREFIX = {
    "org_id": "org",
    "user_id": "usr",
    "inv_id": "inv",
    "entry_id": "ipa",
    "instance_id": "inst",
    "checkpoint_id": "ckpt",
    "snapshot_id": "snap",
    "forward_id": "pf",
}
COLLECTION_PREFIX = {
    "api-keys": "key",
    "users": "usr",
    "orgs": "org",
    "sessions": "ses",
    "instances": "inst",
    "profiles": "prof",
    "servers": "srv",
    "ssh-keys": "sshk",
    "factors": "mfa",
    "webhooks": "whk",
    "base-images": "img",
}


def _prefix_for(path: str, name: str) -> str:
    if name in PARAM_PREFIX:
        return PARAM_PREFIX[name]
    before = path.split("{" + name + "}")[0].rstrip("/").rsplit("/", 1)[-1]
    return COLLECTION_PREFIX.get(before, "x")


def fill(path: str, wrong_prefix: bool = False) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "provider":
            return "github"
        if name == "token":
            return "t" * 43
        prefix = "zzz" if wrong_prefix else _prefix_for(path, name)
        return new_id(prefix)

    return re.sub(r"\{([a-z_]+)(?::[a-z]+)?\}", one, path)


def operations(app: Any) -> list[tuple[str, str, Any]]:
    out = []
    for route in app.routes:
        for method in sorted(getattr(route, "methods", None) or []):
            if method != "HEAD":
                out.append((method, route.path, route))
    return out


async def test_every_route_is_authenticated_unless_listed_public(app, client):
    seen, leaks = set(), []
    for method, path, _ in operations(app):
        seen.add((method, path))
        if (method, path) in PUBLIC:
            continue
        r = await client.request(method, fill(path), json={})
        if r.status_code != 401:
            leaks.append(f"{method} {path} -> {r.status_code}")
        else:
            assert error_code(r) == "unauthenticated"
    assert not leaks, "routes answering without credentials:\n" + "\n".join(leaks)
    assert not PUBLIC - seen, f"PUBLIC lists routes that no longer exist: {PUBLIC - seen}"


async def _first_socket_message(app: Any, path: str) -> dict[str, Any]:
    """What the app sends first to a websocket caller without credentials."""
    scope = {
        "type": "websocket", "asgi": {"version": "3.0"}, "scheme": "ws", "path": path,
        "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"host", b"testserver")], "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80), "subprotocols": [],
    }  # fmt: skip
    incoming = [{"type": "websocket.connect"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0] if sent else {}


async def test_every_websocket_route_refuses_a_caller_without_credentials(app):
    """WebSocket routes cannot take the Request-based `get_principal` dependency, so they sit on
    plain routers (the walk above sees only HTTP methods) and authenticate in the handler. Deny
    by default holds for them all the same, and no socket route is public: each must close with
    4401, before accepting, a caller without credentials."""
    sockets = [r.path for r in app.routes if isinstance(r, APIWebSocketRoute)]
    assert "/v1/instances/{instance_id}/port-forwards/{forward_id}/connect" in sockets
    leaks = []
    for path in sockets:
        first = await _first_socket_message(app, fill(path))
        if first.get("type") != "websocket.close" or first.get("code") != 4401:
            leaks.append(f"{path} -> {first}")
    assert not leaks, "sockets answering without credentials:\n" + "\n".join(leaks)


async def test_public_routes_never_answer_500(client):
    for method, path in sorted(PUBLIC):
        r = await client.request(method, fill(path), json={})
        assert r.status_code < 500 or path.startswith("/health"), (method, path, r.text)


@pytest.fixture
async def signed_in_with_sudo(client):  # type: ignore[no-untyped-def]
    await make_account(client, "walker@example.com")
    assert (await client.post("/v1/auth/sudo", json={"password": PASSWORD})).status_code == 200
    return client


@pytest.mark.parametrize("wrong_prefix", [False, True], ids=["unknown-id", "wrong-prefix"])
async def test_unknown_and_wrong_prefix_ids_are_404_never_500(
    app, signed_in_with_sudo, wrong_prefix
):
    client = signed_in_with_sudo
    problems = []
    for method, path, route in operations(app):
        if "{" not in path or not isinstance(route, APIRoute) or path.startswith("/v1/internal/"):
            continue
        # With a body or a required query to validate first, 422 is as good as 404.
        needs_more = route.body_field is not None or any(
            p.field_info.is_required() for p in route.dependant.query_params
        )
        r = await client.request(method, fill(path, wrong_prefix), json={})
        if r.status_code >= 500:
            problems.append(f"{method} {path} -> {r.status_code} {r.text[:200]}")
        elif not needs_more and r.status_code != 404:
            problems.append(f"{method} {path} -> {r.status_code} (expected 404)")
        else:
            error_code(r)
    assert not problems, "\n".join(problems)


async def test_malformed_json_is_400(client):
    r = await client.post(
        "/v1/auth/signup", content=b'{"email": ', headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400 and error_code(r) == "malformed_json"


async def test_wrong_types_are_422_with_field_locations(client):
    r = await client.post(
        "/v1/auth/signup", json={"email": "not-an-email", "password": 12, "name": ["x"]}
    )
    assert r.status_code == 422 and error_code(r) == "validation_failed"
    locs = [tuple(f["loc"]) for f in r.json()["error"]["details"]["fields"]]
    assert ("body", "email") in locs and ("body", "password") in locs and ("body", "name") in locs
    assert all(f["msg"] for f in r.json()["error"]["details"]["fields"])
    missing = await client.post("/v1/auth/login", json={})
    assert missing.status_code == 422
    q = await client.get("/v1/auth/verify-email", params={"token": "short"})
    assert q.status_code == 422
    assert ["query", "token"] in [f["loc"] for f in q.json()["error"]["details"]["fields"]]


async def test_unknown_route_and_wrong_method(client):
    r = await client.get("/v1/no-such-thing")
    assert r.status_code == 404 and error_code(r) == "not_found"
    r = await client.put("/v1/auth/login", json={})
    assert r.status_code == 405 and error_code(r) == "method_not_allowed"
    assert "POST" in r.headers.get("allow", "")


async def test_request_id_is_echoed_or_generated_on_every_response(client):
    ok = await client.get("/health/live", headers={"X-Request-Id": "trace-abc.123"})
    assert ok.headers["x-request-id"] == "trace-abc.123"
    gen = await client.get("/health/live")
    assert gen.headers["x-request-id"].startswith("req_")
    for r in (
        await client.get("/v1/auth/me", headers={"X-Request-Id": "mine-1"}),
        await client.get("/v1/nope", headers={"X-Request-Id": "mine-1"}),
        await client.post("/v1/auth/login", json={}, headers={"X-Request-Id": "mine-1"}),
    ):
        assert r.headers["x-request-id"] == "mine-1"
        assert r.json()["error"]["request_id"] == "mine-1"
    # A hostile value is not echoed (header injection, log forging); a fresh id is used.
    bad = await client.get("/health/live", headers={"X-Request-Id": "x" * 300})
    assert bad.headers["x-request-id"].startswith("req_")


async def test_security_headers_on_success_and_error(client):
    for r in (await client.get("/health/live"), await client.get("/v1/auth/me")):
        h = r.headers
        assert h["x-content-type-options"] == "nosniff"
        assert h["x-frame-options"] == "DENY"
        assert h["referrer-policy"] == "no-referrer"
        assert "max-age=" in h["strict-transport-security"]
        assert "default-src 'none'" in h["content-security-policy"]


async def test_unexpected_errors_are_500_in_shape_with_request_id(app):
    async def boom() -> None:
        raise RuntimeError("secret internal detail /etc/passwd")

    app.add_api_route("/test-only/boom", boom, methods=["GET"])
    transport = ASGITransport(app=app, raise_app_exceptions=False)
    async with AsyncClient(transport=transport, base_url="http://testserver") as c:
        r = await c.get("/test-only/boom", headers={"X-Request-Id": "boom-1"})
    assert r.status_code == 500 and error_code(r) == "internal_error"
    assert r.headers["x-request-id"] == "boom-1" and r.json()["error"]["request_id"] == "boom-1"
    assert "secret" not in r.text and "passwd" not in r.text
    assert r.headers["x-content-type-options"] == "nosniff"


async def test_cors_from_settings(settings, db):
    from forkyard.app import create_app

    settings.cors_origins = ["https://console.example.com"]
    application = create_app(settings, db=db)
    async with AsyncClient(
        transport=ASGITransport(app=application), base_url="http://testserver"
    ) as c:
        pre = await c.options(
            "/v1/auth/me",
            headers={
                "Origin": "https://console.example.com",
                "Access-Control-Request-Method": "GET",
            },
        )
        assert pre.headers["access-control-allow-origin"] == "https://console.example.com"
        assert pre.headers["access-control-allow-credentials"] == "true"
        other = await c.get("/health/live", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
