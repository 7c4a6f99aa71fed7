"""Webhooks end to end: a real receiver verifies every delivery with the standardwebhooks
library; retries run on the movable clock until the dead-letter queue; rotation signs with both
secrets; private addresses are refused; one delivery per event and endpoint whatever runs twice;
an endpoint that keeps failing is disabled and its owner told; one org never sees another's."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from forkyard.config import Settings
from forkyard.events.kernel import deliver
from forkyard.identity.models import User
from forkyard.jobs.models import Job
from forkyard.jobs.queue import JobContext
from forkyard.kit.clock import clock
from forkyard.webhooks import queries, service, transport
from forkyard.webhooks.errors import WebhookUrlRefused
from forkyard.webhooks.models import WebhookDelivery, WebhookEndpoint
from tests.helpers import error_code, make_account, make_api_key, outbox


async def hook(client: Any, url: str, types: list[str] | None = None) -> dict[str, Any]:
    r = await client.post("/v1/webhooks", json={"url": url, "event_types": types or ["*"]})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["secret"].startswith("whsec_")
    return dict(body)


def verified(secret: str, req: Any) -> dict[str, Any]:
    return dict(Webhook(secret).verify(req.body, req.headers))


async def deliveries(db: Any) -> list[WebhookDelivery]:
    async with db.transaction() as s:
        return list((await s.execute(select(WebhookDelivery))).scalars())


async def test_a_committed_event_reaches_the_endpoint_signed(client, run_jobs, receiver):
    me = await make_account(client, "hook@example.com")
    wh = await hook(client, receiver.url, ["api_key.created"])
    assert "secret" not in (await client.get(f"/v1/webhooks/{wh['id']}")).json()
    await make_api_key(client, name="ci")
    await run_jobs()

    assert len(receiver.requests) == 1
    req = receiver.requests[0]
    body = verified(wh["secret"], req)
    assert body["type"] == "api_key.created"
    assert body["data"]["org_id"] == me.org_id and body["data"]["payload"]["name"] == "ci"
    assert req.headers["webhook-id"].startswith("msg_")
    # The same event, as the events API shows it.
    event = (await client.get(f"/v1/events/{body['data']['id']}")).json()
    assert event == body["data"]
    listed = (await client.get("/v1/events", params={"type": "api_key."})).json()["data"]
    assert [e["id"] for e in listed] == [event["id"]]
    # A wrong secret does not verify.
    with pytest.raises(WebhookVerificationError):
        verified(transport.new_secret(), req)

    attempts = (await client.get(f"/v1/webhooks/{wh['id']}/deliveries")).json()["data"]
    assert len(attempts) == 1
    a = attempts[0]
    assert (a["succeeded"], a["status_code"], a["delivery_status"]) == (True, 200, "delivered")
    assert a["response_excerpt"] == "ok from receiver" and a["next_attempt_at"] is None


async def test_retries_then_dead_letter_then_staff_retry_delivers(client, db, run_jobs, receiver):
    await make_account(client, "retry@example.com")
    wh = await hook(client, receiver.url, ["api_key.created"])
    await make_api_key(client)
    receiver.status = 500
    clock.freeze()
    await run_jobs()
    assert len(receiver.requests) == 1
    for delay in service.RETRY_DELAYS_S:
        # Not yet due: nothing is sent.
        clock.advance(timedelta(seconds=delay * (1 - service.JITTER) - 1))
        await run_jobs()
        sent = len(receiver.requests)
        clock.advance(timedelta(seconds=delay * 2 * service.JITTER + 2))
        await run_jobs()
        assert len(receiver.requests) == sent + 1
    assert len(receiver.requests) == 8
    ids = {r.headers["webhook-id"] for r in receiver.requests}
    assert len(ids) == 1
    [d] = await deliveries(db)
    assert (d.status, d.attempts, d.next_attempt_at) == ("dead", 8, None)
    clock.advance(timedelta(days=1))
    await run_jobs()
    assert len(receiver.requests) == 8
    clock.reset()

    async with db.transaction() as s:
        await s.execute(update(User).where(User.email == "retry@example.com").values(is_staff=True))
    dlq = (await client.get("/v1/admin/webhooks/dlq")).json()["data"]
    assert [x["id"] for x in dlq] == [d.id]
    receiver.status = 200
    r = await client.post(f"/v1/admin/webhooks/dlq/{d.id}/retry")
    assert r.status_code == 200 and r.json()["status"] == "pending", r.text
    r = await client.post(f"/v1/admin/webhooks/dlq/{d.id}/retry")
    assert r.status_code == 409 and error_code(r) == "delivery_not_dead_lettered"
    r = await client.post("/v1/admin/webhooks/process-queue")
    assert r.json() == {"attempted": 1, "delivered": 1}
    assert receiver.requests[-1].headers["webhook-id"] == d.id
    verified(wh["secret"], receiver.requests[-1])
    assert (await client.get("/v1/admin/webhooks/dlq")).json()["data"] == []
    attempts = (await client.get(f"/v1/webhooks/{wh['id']}/deliveries")).json()["data"]
    # (their times are on the moved clock, then the real one: count, not order)
    assert sorted(a["succeeded"] for a in attempts) == [False] * 8 + [True]
    assert {a["response_excerpt"] for a in attempts} == {"receiver says no", "ok from receiver"}


async def test_reap_and_dlq_are_staff_only(client, new_client, db, run_jobs, receiver):
    await make_account(client, "nostaff@example.com")
    r = await client.get("/v1/admin/webhooks/dlq")
    assert r.status_code == 404
    r = await client.post("/v1/admin/webhooks/dlq/reap", json={"older_than": 0})
    assert r.status_code == 404


async def test_rotation_signs_with_both_secrets_for_a_day(client, receiver):
    await make_account(client, "rotate@example.com")
    wh = await hook(client, receiver.url)
    r = await client.patch(f"/v1/webhooks/{wh['id']}", json={"rotate_secret": True})
    assert r.status_code == 200, r.text
    new = r.json()["secret"]
    assert new.startswith("whsec_") and new != wh["secret"]
    r = await client.post(f"/v1/webhooks/{wh['id']}/test")
    assert r.status_code == 200 and r.json()["succeeded"], r.text
    req = receiver.requests[-1]
    assert len(req.headers["webhook-signature"].split(" ")) == 2
    assert verified(wh["secret"], req)["type"] == "webhook.test"
    assert verified(new, req)["data"]["resource_id"] == wh["id"]
    # A day later only the new one signs.
    clock.advance(timedelta(hours=24, minutes=1))
    await make_account(client, "rotate2@example.com")  # a fresh session after the jump
    await client.post("/v1/auth/logout")


async def test_rotation_ends_after_24_hours(db, settings, receiver):
    async with db.transaction() as s:
        from forkyard.identity.service import create_user

        user = await create_user(s, email="r24@example.com", password=None, name="R")
        endpoint, old = await service.create_endpoint(
            s,
            settings,
            user.personal_org_id,
            url=receiver.url,
            description=None,
            event_types=["*"],
            enabled=True,
            created_by=user.id,
        )
        new = await service.update_endpoint(s, settings, endpoint, {"rotate_secret": True})
        assert service.live_secrets(settings, endpoint) == [new, old]
        clock.advance(timedelta(hours=24, seconds=1))
        assert service.live_secrets(settings, endpoint) == [new]
        # Stored sealed: neither secret is in the row.
        assert old not in endpoint.previous_secret_sealed and new not in endpoint.secret_sealed


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hooks",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.1.2.3/hooks",
        "http://localhost:9/hooks",  # a name that resolves to loopback
        "http://[::1]:9/hooks",
        "http://[::ffff:10.0.0.1]/x",
    ],
)
async def test_private_addresses_are_refused_without_the_flag(client, settings, url):
    settings.webhooks_allow_private = False
    await make_account(client, "ssrf@example.com")
    r = await client.post("/v1/webhooks", json={"url": url})
    assert r.status_code == 422 and error_code(r) == "webhook_url_refused", r.text


async def test_https_only_outside_development_and_no_credentials():
    prod = Settings(env="production", secret_key="s" * 32, node_token="n" * 32)
    with pytest.raises(WebhookUrlRefused):
        transport.parse_url("http://example.com/hooks", prod)
    assert transport.parse_url("https://example.com/h?x=1", prod).path == "/h?x=1"
    with pytest.raises(WebhookUrlRefused):
        transport.parse_url("https://user:pw@example.com/", prod)


async def test_connect_time_check_and_no_redirects(client, db, settings, run_jobs, receiver):
    await make_account(client, "rebind@example.com")
    wh = await hook(client, receiver.url)
    # A redirect is an answer, not an instruction: not followed, and a failure.
    receiver.status, receiver.location = 302, "http://169.254.169.254/"
    r = await client.post(f"/v1/webhooks/{wh['id']}/test")
    assert r.json()["succeeded"] is False and r.json()["status_code"] == 302
    assert r.json()["error"] == "redirects are not followed"
    assert len(receiver.requests) == 1
    # The address is checked again at connect time: saved while allowed, refused now.
    settings.webhooks_allow_private = False
    receiver.status, receiver.location = 200, None
    r = await client.post(f"/v1/webhooks/{wh['id']}/test")
    assert r.json()["succeeded"] is False and "may not reach" in r.json()["error"]
    assert len(receiver.requests) == 1


async def test_one_delivery_per_event_when_the_worker_dies_between_commit_and_send(
    client, db, settings, receiver
):
    await make_account(client, "once@example.com")
    wh = await hook(client, receiver.url, ["api_key.created"])
    await make_api_key(client)
    async with db.transaction() as s:
        fan_out = (
            await s.execute(
                select(Job).where(
                    Job.name == "events.deliver",
                    Job.payload["subscriber"].astext == "webhooks.fan_out:api_key.created",
                )
            )
        ).scalar_one()
    # The fan-out job runs, commits, and its worker dies before marking it done: it runs again.
    for _ in range(2):
        async with db.transaction() as s:
            await deliver(JobContext(s, settings, fan_out.id, 1), dict(fan_out.payload))
    [d] = await deliveries(db)
    assert d.endpoint_id == wh["id"]
    # The send job, too, may run twice: one request.
    for _ in range(2):
        async with db.transaction() as s:
            await service.send_if_due(s, settings, d.id)
    assert len(receiver.requests) == 1
    assert receiver.requests[0].headers["webhook-id"] == d.id
    # And the rows are unique per (endpoint, event) whatever calls them.
    async with db.transaction() as s:
        from forkyard.events.models import EventRecord

        event = await s.get(EventRecord, json.loads(receiver.requests[0].body)["data"]["id"])
        assert event is not None
        assert await queries.create_deliveries(s, event) == 0


async def test_a_fan_out_makes_one_delivery_and_one_send_job_per_matching_endpoint(
    client, db, settings, run_jobs, receiver
):
    await make_account(client, "fan@example.com")
    await run_jobs()  # the account's own events, before any endpoint exists
    wanted = [(await hook(client, receiver.url + f"/{i}", ["api_key.created"]))["id"] for i in "ab"]
    wanted.append((await hook(client, receiver.url + "/all"))["id"])  # ["*"]
    await hook(client, receiver.url + "/other", ["member.added"])
    await make_api_key(client)
    async with db.transaction() as s:
        fan_out = (
            await s.execute(
                select(Job).where(
                    Job.payload["subscriber"].astext == "webhooks.fan_out:api_key.created",
                    Job.status == "queued",
                )
            )
        ).scalar_one()
    for _ in range(2):  # a second run (its worker died before the mark) adds nothing
        async with db.transaction() as s:
            await deliver(JobContext(s, settings, fan_out.id, 1), dict(fan_out.payload))
    made = await deliveries(db)
    assert sorted(d.endpoint_id for d in made) == sorted(wanted)
    async with db.transaction() as s:
        sends = (await s.execute(select(Job).where(Job.name == "webhooks.send"))).scalars().all()
    assert sorted(j.payload["delivery_id"] for j in sends) == sorted(d.id for d in made)
    await run_jobs()
    assert sorted(r.path for r in receiver.requests) == ["/hooks/a", "/hooks/all", "/hooks/b"]
    assert {d.status for d in await deliveries(db)} == {"delivered"}


async def test_an_endpoint_failing_for_days_is_disabled_and_its_owner_told(
    client, db, settings, run_jobs, receiver
):
    settings.webhooks_disable_after_s = 3600
    me = await make_account(client, "failing@example.com")
    wh = await hook(client, receiver.url, ["api_key.created"])
    await make_api_key(client)
    receiver.status = 503
    clock.freeze()
    await run_jobs()
    for delay in service.RETRY_DELAYS_S[:4]:
        clock.advance(timedelta(seconds=delay * (1 + service.JITTER) + 1))
        await run_jobs()
    async with db.transaction() as s:
        endpoint = await s.get(WebhookEndpoint, wh["id"])
        assert endpoint is not None
        assert (endpoint.enabled, endpoint.disabled_reason) == (False, "failing")
        [d] = list((await s.execute(select(WebhookDelivery))).scalars())
        assert d.status == "dead"
    sent = len(receiver.requests)
    clock.advance(timedelta(days=1))
    await run_jobs()
    assert len(receiver.requests) == sent
    clock.reset()
    mails = [m for m in outbox(settings) if str(m["To"]) == me.email]
    assert any(f"Webhook {wh['id']} was disabled" in str(m["Subject"]) for m in mails)
    await make_account(client, "failing2@example.com")  # a new session; then the owner again
    from tests.helpers import login

    await login(client, me.email)
    notes = (await client.get("/v1/notifications")).json()["data"]
    assert [n["kind"] for n in notes] == ["webhook.disabled"]
    r = await client.patch(f"/v1/webhooks/{wh['id']}", json={"enabled": True})
    assert r.json()["enabled"] is True and r.json()["disabled_reason"] is None


async def test_one_org_never_sees_another_orgs_events_or_endpoints(new_client, run_jobs, receiver):
    a = await make_account(new_client(), "a@example.com")
    b = await make_account(new_client(), "b@example.com")
    wh_a = await hook(a.client, receiver.url, ["api_key.created"])
    await make_api_key(b.client, name="b's key")
    await run_jobs()
    assert receiver.requests == []  # b's events never reach a's endpoint
    key_b = await make_api_key(b.client, ["read", "write", "admin"], name="b2")
    b_api = new_client()
    b_api.headers["Authorization"] = f"Bearer {key_b}"
    await make_api_key(a.client, name="a's key")
    await run_jobs()
    [req] = receiver.requests
    a_event = json.loads(req.body)["data"]["id"]
    r = await b_api.get(f"/v1/events/{a_event}")
    assert r.status_code == 404 and error_code(r) == "not_found"
    assert a_event not in {e["id"] for e in (await b_api.get("/v1/events")).json()["data"]}
    assert all(e["org_id"] == b.org_id for e in (await b_api.get("/v1/events")).json()["data"])
    for method, path in [
        ("GET", f"/v1/webhooks/{wh_a['id']}"),
        ("PATCH", f"/v1/webhooks/{wh_a['id']}"),
        ("DELETE", f"/v1/webhooks/{wh_a['id']}"),
        ("GET", f"/v1/webhooks/{wh_a['id']}/deliveries"),
        ("POST", f"/v1/webhooks/{wh_a['id']}/test"),
    ]:
        r = await b_api.request(method, path, json={} if method == "PATCH" else None)
        assert r.status_code == 404, (method, path, r.text)
    assert (await b_api.get("/v1/webhooks")).json()["data"] == []


async def test_validation_and_limits(client, settings, receiver):
    await make_account(client, "valid@example.com")
    r = await client.post("/v1/webhooks", json={"url": receiver.url, "event_types": ["nope.x"]})
    assert r.status_code == 422 and error_code(r) == "validation_failed"
    r = await client.post("/v1/webhooks", json={"url": receiver.url, "event_types": []})
    assert r.status_code == 422
    settings.webhooks_max_per_org = 1
    await hook(client, receiver.url)
    r = await client.post("/v1/webhooks", json={"url": receiver.url})
    assert r.status_code == 403 and error_code(r) == "webhook_limit_reached"
    r = await client.get("/v1/webhooks/whk_nope")
    assert r.status_code == 404
    settings.webhooks_test_per_min = 2
    wh = (await client.get("/v1/webhooks")).json()["data"][0]
    for _ in range(2):
        assert (await client.post(f"/v1/webhooks/{wh['id']}/test")).status_code == 200
    r = await client.post(f"/v1/webhooks/{wh['id']}/test")
    assert r.status_code == 429 and "Retry-After" in r.headers
    r = await client.delete(f"/v1/webhooks/{wh['id']}")
    assert r.status_code == 204
    assert (await client.get(f"/v1/webhooks/{wh['id']}")).status_code == 404
