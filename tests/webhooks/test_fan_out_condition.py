"""The webhook fan-out is queued only for an org with an enabled endpoint that wants the event's
type (or "*"), decided in the emitting transaction; an org without one gets the event row and
no job, and another org's endpoint does not count."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from forkyard.events.models import EventRecord
from forkyard.jobs.models import Job
from tests.helpers import make_account, make_api_key

FAN_OUT = "webhooks.fan_out:api_key.created"


async def fan_outs(db: Any) -> int:
    async with db.transaction() as s:
        stmt = select(func.count()).where(Job.payload["subscriber"].astext == FAN_OUT)
        return int((await s.execute(stmt)).scalar_one())


async def created_events(db: Any) -> int:
    async with db.transaction() as s:
        stmt = select(func.count()).where(EventRecord.type == "api_key.created")
        return int((await s.execute(stmt)).scalar_one())


async def test_fan_out_only_where_an_endpoint_listens(client, new_client, db, run_jobs, receiver):
    await make_account(client, "cond@example.com")
    other = new_client()
    await make_account(other, "cond-other@example.com")
    # Another org listens to everything: it does not make this org's events fan out.
    r = await other.post(
        "/v1/webhooks", json={"url": receiver.url + "/other", "event_types": ["*"]}
    )
    assert r.status_code == 201, r.text
    await make_api_key(client, name="nobody")
    assert (await created_events(db), await fan_outs(db)) == (1, 0)
    r = await client.post(
        "/v1/webhooks", json={"url": receiver.url + "/members", "event_types": ["member.added"]}
    )
    assert r.status_code == 201, r.text
    await make_api_key(client, name="other type")
    assert (await created_events(db), await fan_outs(db)) == (2, 0)
    r = await client.post(
        "/v1/webhooks", json={"url": receiver.url + "/keys", "event_types": ["api_key.created"]}
    )
    assert r.status_code == 201, r.text
    endpoint = r.json()["id"]
    await make_api_key(client, name="heard")
    assert (await created_events(db), await fan_outs(db)) == (3, 1)
    await run_jobs()
    assert [q.path for q in receiver.requests] == ["/hooks/keys"]
    # Disabled, it stops counting.
    r = await client.patch(f"/v1/webhooks/{endpoint}", json={"enabled": False})
    assert r.status_code == 200, r.text
    await make_api_key(client, name="disabled")
    assert (await created_events(db), await fan_outs(db)) == (4, 1)
