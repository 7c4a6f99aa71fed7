"""Org factories: people with their own browser, a team org, and joining it the real way
(an emailed invitation, accepted by the invitee)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from httpx import AsyncClient

from tests.helpers import Account, last_link, make_account

INVITE_LINK = r"/v1/auth/invitations/([A-Za-z0-9_\-]+)"


@dataclass
class Team:
    id: str
    owner: Account


class Orgs:
    def __init__(self, new_client: Any, run_jobs: Any, settings: Any) -> None:
        self.new_client = new_client
        self.run_jobs = run_jobs
        self.settings = settings

    async def person(self, email: str, ip: str = "127.0.0.1") -> Account:
        return await make_account(self.new_client(ip=ip), email)

    async def team(self, owner: Account, name: str = "Acme") -> Team:
        r = await owner.client.post("/v1/orgs", json={"name": name})
        assert r.status_code == 201, r.text
        return Team(r.json()["id"], owner)

    async def invite(
        self, inviter: AsyncClient, org_id: str, email: str, role: str = "member"
    ) -> tuple[str, str]:
        """Invite `email` and return (invitation id, token read from the emailed link)."""
        r = await inviter.post(
            f"/v1/orgs/{org_id}/invitations", json={"email": email, "role": role}
        )
        assert r.status_code == 201, r.text
        await self.run_jobs()
        return r.json()["id"], last_link(self.settings, email, INVITE_LINK)

    async def join(self, team: Team, email: str, role: str = "member") -> Account:
        """A new person who joins `team` with `role` by accepting an emailed invitation."""
        person = await self.person(email)
        _, token = await self.invite(team.owner.client, team.id, email, role)
        r = await person.client.post(f"/v1/auth/invitations/{token}/accept")
        assert r.status_code == 200, r.text
        return person


@pytest.fixture
def orgs(new_client: Any, run_jobs: Any, settings: Any) -> Orgs:
    return Orgs(new_client, run_jobs, settings)


async def audit_actions(client: AsyncClient, org_id: str) -> list[str]:
    r = await client.get("/v1/audit", headers={"X-Forkyard-Org": org_id}, params={"limit": 200})
    assert r.status_code == 200, r.text
    return [e["action"] for e in r.json()["data"]]
