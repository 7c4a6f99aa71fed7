"""Limits a stranger cannot talk their way around: the client address comes from
X-Forwarded-For only through our own proxies; a flood of new keys or addresses never resets
anyone's bucket; second-factor guesses are capped per account, not only per challenge."""

from __future__ import annotations

from datetime import timedelta

import pytest

from forkyard.identity.service import LoginThrottle
from forkyard.kit.clock import clock
from forkyard.kit.errors import RateLimited
from forkyard.kit.ratelimit import RateLimiter
from tests.fakes.identity_helpers import enroll_totp, oathtool, password_step
from tests.helpers import error_code, make_account, make_api_key

PROXY = "10.20.0.5"


async def _ip_seen(client, new_client, peer: str, forwarded: str | None) -> str:  # type: ignore[no-untyped-def]
    """The address the platform recorded for a request from `peer` carrying `forwarded`."""
    key = await make_api_key(client, ["read"])
    caller = new_client(peer)
    headers = {"Authorization": f"Bearer {key}"}
    if forwarded is not None:
        headers["X-Forwarded-For"] = forwarded
    assert (await caller.get("/v1/api-keys", headers=headers)).status_code == 200
    listed = (await client.get("/v1/api-keys")).json()["data"]
    return str(next(k["last_used_ip"] for k in listed if key.startswith(k["prefix"])))


async def test_forwarded_for_is_ignored_without_trusted_proxies(client, new_client):
    await make_account(client, "xff1@example.com")
    assert await _ip_seen(client, new_client, "198.51.100.7", "203.0.113.9") == "198.51.100.7"


async def test_only_trusted_proxies_are_believed_and_the_rightmost_untrusted_hop_wins(
    client, new_client, settings
):
    settings.trusted_proxies = ["10.20.0.0/16"]
    await make_account(client, "xff2@example.com")
    # Through our proxy: the address it saw.
    assert await _ip_seen(client, new_client, PROXY, "203.0.113.9") == "203.0.113.9"
    # The client forged a first hop; our proxy appended the real one.
    seen = await _ip_seen(client, new_client, PROXY, "1.2.3.4, 203.0.113.9")
    assert seen == "203.0.113.9"
    # Two of our proxies in a row: skip both.
    seen = await _ip_seen(client, new_client, PROXY, "1.2.3.4, 203.0.113.9, 10.20.0.9")
    assert seen == "203.0.113.9"
    # Garbage beyond our proxies: the last hop we can vouch for.
    assert await _ip_seen(client, new_client, PROXY, "not-an-ip") == PROXY
    # Not from our proxy: the header is the caller's own invention.
    seen = await _ip_seen(client, new_client, "198.51.100.7", "203.0.113.9")
    assert seen == "198.51.100.7"


async def test_rotating_forwarded_for_does_not_escape_the_per_ip_limit(
    client, new_client, settings
):
    settings.trusted_proxies = ["10.20.0.0/16"]
    spammer = new_client("198.51.100.8")
    codes = []
    for i in range(settings.rate_limit_anonymous_per_min + 1):
        r = await spammer.post(
            "/v1/auth/login",
            json={"email": f"x{i}@example.com", "password": "x" * 12},
            headers={"X-Forwarded-For": f"203.0.113.{i}"},
        )
        codes.append(r.status_code)
    assert codes[-1] == 429 and error_code(r) == "rate_limited"


def test_a_flood_of_new_keys_never_resets_a_drained_bucket():
    limiter = RateLimiter(max_keys=100)
    for _ in range(5):
        limiter.hit("p:api_key:victim-of-limit", 5)
    with pytest.raises(RateLimited):
        limiter.hit("p:api_key:victim-of-limit", 5)
    for i in range(5000):  # fresh keys, each used once
        limiter.hit(f"p:api_key:new-{i}", 1200)
    with pytest.raises(RateLimited):
        limiter.hit("p:api_key:victim-of-limit", 5)
    assert len(limiter._buckets) <= 100  # and memory stays bounded


def test_a_flood_of_made_up_addresses_never_resets_an_accounts_sign_in_delay():
    throttle = LoginThrottle(free_failures=1, max_keys=100)
    for _ in range(6):
        throttle.failed("acct:target@example.com")
    with pytest.raises(RateLimited):
        throttle.check(("acct:target@example.com", 1))
    for i in range(5000):
        throttle.failed(f"acct:nobody{i}@example.com")
    with pytest.raises(RateLimited):
        throttle.check(("acct:target@example.com", 1))


async def test_second_factor_guesses_are_capped_per_account_across_challenges(
    client, new_client, settings
):
    clock.freeze()
    await make_account(client, "guess@example.com")
    secret = await enroll_totp(client)
    browser = new_client("10.0.9.1")
    wrong = "000000" if oathtool(secret) != "000000" else "111111"
    failures = 0
    while failures < settings.mfa_user_max_failures:
        # A fresh challenge each time the last one is spent: the password is known.
        token = (await password_step(browser, "guess@example.com"))["challenge_token"]
        for _ in range(settings.mfa_challenge_max_attempts):
            if failures == settings.mfa_user_max_failures:
                break
            r = await browser.post(
                "/v1/auth/login/mfa", json={"challenge_token": token, "code": wrong}
            )
            assert r.status_code == 400, r.text
            failures += 1
    token = (await password_step(browser, "guess@example.com"))["challenge_token"]
    r = await browser.post(
        "/v1/auth/login/mfa", json={"challenge_token": token, "code": oathtool(secret)}
    )
    # Even the right code: the account is not taking guesses now.
    assert r.status_code == 429 and error_code(r) == "rate_limited"
    assert int(r.headers["Retry-After"]) >= 1
    clock.advance(timedelta(seconds=settings.mfa_user_failure_window_s + 1))
    token = (await password_step(browser, "guess@example.com"))["challenge_token"]
    r = await browser.post(
        "/v1/auth/login/mfa", json={"challenge_token": token, "code": oathtool(secret)}
    )
    assert r.status_code == 200, r.text
