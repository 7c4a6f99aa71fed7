"""An API key acts within its org only: routes that act on a person's account (credentials,
factors, sessions, contact details, export, SSH keys, new keys, orgs) refuse it unless it has
the explicit `account` scope, and credential routes refuse every key. Each route's demand is in
the reference as `x-forkyard-auth`."""

from __future__ import annotations

from typing import Any

from tests.helpers import error_code, make_account, make_api_key
from tests.test_app import fill

ACCOUNT_LEVELS = {"account", "session", "sudo"}
# Protected routes under the account's paths that a plain org key may still call: who am I.
ORG_KEY_MAY = {("GET", "/v1/auth/me")}


def _operations(app: Any) -> list[tuple[str, str, str]]:
    out = []
    for path, item in app.openapi()["paths"].items():
        for method, op in item.items():
            out.append((method.upper(), path, op["x-forkyard-auth"]))
    return out


def test_every_operation_documents_who_may_call_it(app):
    for method, path, level in _operations(app):
        assert level in {"public", "org", "account", "session", "sudo", "staff", "node"}
        op = app.openapi()["paths"][path][method.lower()]
        assert "Access:" in op["description"], (method, path)


def test_account_paths_are_classed_account_level(app):
    levels = {(m, p): lvl for m, p, lvl in _operations(app)}
    for (method, path), level in levels.items():
        personal = path.startswith(("/v1/auth/", "/v1/account/")) and level != "public"
        if personal and (method, path) not in ORG_KEY_MAY:
            assert level in ACCOUNT_LEVELS, f"{method} {path} is {level}"
    for op in [("POST", "/v1/api-keys"), ("POST", "/v1/orgs"), ("POST", "/v1/auth/set-password")]:
        assert levels[op] in ACCOUNT_LEVELS, op
    assert levels[("POST", "/v1/auth/set-password")] == "session"
    assert levels[("GET", "/v1/account/ssh-keys")] == "account"


async def test_an_org_key_is_refused_on_every_account_level_route(app, client, new_client):
    await make_account(client, "reach@example.com")
    # Every org scope there is, but not `account`: the strongest key an org admin hands a robot.
    key = await make_api_key(client, ["read", "write", "admin"])
    bot = new_client()
    bot.headers["Authorization"] = f"Bearer {key}"
    tried, wrong = 0, []
    for method, path, level in _operations(app):
        if level not in ACCOUNT_LEVELS:
            continue
        r = await bot.request(method, fill(path), json={})
        tried += 1
        if r.status_code != 403 or error_code(r) not in {"cookie_session_required", "forbidden"}:
            wrong.append(f"{method} {path} ({level}) -> {r.status_code} {r.text[:120]}")
    assert tried > 30 and not wrong, "\n".join(wrong)
    # The key still works inside its org.
    assert (await bot.get("/v1/api-keys")).status_code == 200


async def test_the_account_scope_opens_account_routes_but_never_credentials(client, new_client):
    await make_account(client, "scoped@example.com")
    key = await make_api_key(client, ["read", "write", "account"])
    bot = new_client()
    bot.headers["Authorization"] = f"Bearer {key}"
    assert (await bot.get("/v1/account/ssh-keys")).status_code == 200
    assert (await bot.patch("/v1/auth/me", json={"name": "Robot"})).status_code == 200
    made = await bot.post("/v1/api-keys", json={"name": "child", "scopes": ["read"]})
    assert made.status_code == 201
    for method, path, body in [
        ("POST", "/v1/auth/set-password", {"new_password": "a much longer password 1"}),
        ("POST", "/v1/auth/me/password", {"current_password": "x", "new_password": "y" * 20}),
        ("POST", "/v1/auth/me/sessions/revoke-others", {}),
        ("POST", "/v1/auth/me/export", {}),
        ("GET", "/v1/auth/mfa/factors", None),
        ("POST", "/v1/auth/sudo", {"password": "x"}),
    ]:
        r = await bot.request(method, path, json=body)
        assert r.status_code == 403 and error_code(r) == "cookie_session_required", (path, r.text)


async def test_a_key_cannot_mint_a_key_with_more_than_it_has(client, new_client):
    await make_account(client, "mint@example.com")
    key = await make_api_key(client, ["read", "write", "account"])
    bot = new_client()
    bot.headers["Authorization"] = f"Bearer {key}"
    r = await bot.post("/v1/api-keys", json={"name": "up", "scopes": ["admin"]})
    assert r.status_code == 403 and error_code(r) == "forbidden"
