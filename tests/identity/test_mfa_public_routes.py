"""The public paths of MFA, magic links, OAuth and recovery are exactly the listed ones; every
other route of these features answers 401 without credentials."""

from __future__ import annotations

from fastapi.routing import APIRoute

from forkyard.identity.account_routers import PUBLIC, routers


async def test_public_list_matches_and_the_rest_is_protected(app, client):
    mine = {
        (method, route.path)
        for router in routers
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    }
    public = {(m, p) for m, p in mine if p in PUBLIC}
    assert {p for _, p in public} == set(PUBLIC)
    for method, path in sorted(mine - public):
        r = await client.request(method, path.replace("{id}", "x"), json={})
        assert r.status_code == 401, (method, path, r.status_code)
