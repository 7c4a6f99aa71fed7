"""Rate limits: per IP for anonymous auth routes, per principal otherwise (429 + Retry-After),
and a failed-login slowdown per account that treats unknown emails exactly like known ones."""

from __future__ import annotations

from datetime import timedelta

from forkyard.kit.clock import clock
from tests.helpers import PASSWORD, error_code, make_account, make_api_key, signup


async def test_anonymous_login_spam_from_one_ip_is_429(new_client, settings):
    settings.rate_limit_anonymous_per_min = 5
    spammer = new_client("203.0.113.7")
    codes = []
    for i in range(7):
        r = await spammer.post(
            "/v1/auth/login", json={"email": f"u{i}@example.com", "password": "x" * 12}
        )
        codes.append(r.status_code)
    assert codes[:5] == [401] * 5 and codes[5] == 429
    assert error_code(r) == "rate_limited"
    retry = int(r.headers["Retry-After"])
    assert 1 <= retry <= 60 and r.json()["error"]["details"]["retry_after_s"] == retry
    # Another address is unaffected.
    other = await new_client("203.0.113.8").post(
        "/v1/auth/login", json={"email": "u@example.com", "password": "x" * 12}
    )
    assert other.status_code == 401
    # After Retry-After the bucket has refilled enough.
    clock.advance(timedelta(seconds=retry))
    r = await spammer.post("/v1/auth/login", json={"email": "z@example.com", "password": "x" * 12})
    assert r.status_code == 401


async def test_per_principal_limit(client, new_client, settings):
    await make_account(client, "busy@example.com")
    key = await make_api_key(client)
    settings.rate_limit_principal_per_min = 3
    bot = new_client()
    bot.headers["Authorization"] = f"Bearer {key}"
    codes = [(await bot.get("/v1/auth/me")).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    r = await bot.get("/v1/auth/me")
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    # The browser session is a different principal with its own bucket.
    assert (await client.get("/v1/auth/me")).status_code == 200


async def _fail(client, email):  # type: ignore[no-untyped-def]
    return await client.post("/v1/auth/login", json={"email": email, "password": "wrong pass 123"})


async def test_failed_logins_slow_down_alike_for_known_and_unknown_emails(client, new_client):
    await signup(client, "known@example.com")
    # Time stands still: each slow password hash must not let a throttle window lapse.
    clock.freeze()
    results = {}
    for email, ip in (("known@example.com", "198.51.100.1"), ("ghost@example.com", "198.51.100.2")):
        c = new_client(ip)
        seq = [await _fail(c, email) for _ in range(5)]
        results[email] = [
            (r.status_code, r.json()["error"]["code"], r.headers.get("Retry-After")) for r in seq
        ]
    assert results["known@example.com"] == results["ghost@example.com"]
    statuses = [s for s, _, _ in results["known@example.com"]]
    assert statuses[:3] == [401, 401, 401] and 429 in statuses[3:]

    # While throttled even the right password is refused (from any address: it is per account).
    r = await new_client("198.51.100.9").post(
        "/v1/auth/login", json={"email": "known@example.com", "password": PASSWORD}
    )
    assert r.status_code == 429 and error_code(r) == "rate_limited"
    clock.advance(timedelta(seconds=int(r.headers["Retry-After"])))
    ok = await new_client("198.51.100.9").post(
        "/v1/auth/login", json={"email": "known@example.com", "password": PASSWORD}
    )
    assert ok.status_code == 200
