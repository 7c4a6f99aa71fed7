"""Phone and email changes (sudo where required, no enumeration), export, deletion cascade."""

from __future__ import annotations

from sqlalchemy import func, select

from forkyard.events.models import EventRecord
from forkyard.identity.models import MfaFactor, SshKey
from tests.fakes.identity_helpers import enroll_totp, last_sms_code, sudo
from tests.helpers import PASSWORD, error_code, last_link, make_account, outbox

PHONE, PHONE2 = "+14155550111", "+14155550122"


async def test_phone_verify_then_change_needs_sudo(client, run_jobs, settings):
    await make_account(client, "ph@example.com")
    assert (await client.post("/v1/auth/phone/send-code", json={"phone": PHONE})).status_code == 200
    await run_jobs()
    r = await client.post("/v1/auth/phone/verify", json={"phone": PHONE, "code": "000000"})
    assert r.status_code == 400
    code = last_sms_code(settings, PHONE)
    r = await client.post("/v1/auth/phone/verify", json={"phone": PHONE, "code": code})
    assert r.status_code == 200 and r.json()["phone"] == PHONE
    await client.post("/v1/auth/phone/send-code", json={"phone": PHONE2})
    await run_jobs()
    code2 = last_sms_code(settings, PHONE2)
    r = await client.post("/v1/auth/phone/verify", json={"phone": PHONE2, "code": code2})
    assert r.status_code == 409 and error_code(r) == "phone_change_requires_sudo"
    r = await client.post("/v1/auth/me/phone", json={"phone": PHONE2, "code": code2})
    assert r.status_code == 403 and error_code(r) == "sudo_required"
    await sudo(client)
    r = await client.post("/v1/auth/me/phone", json={"phone": PHONE2, "code": code2})
    assert r.status_code == 200 and r.json()["phone"] == PHONE2


async def test_email_change_is_sudo_gated_and_does_not_enumerate(
    client, new_client, run_jobs, settings
):
    await make_account(client, "old@example.com")
    other = new_client("10.7.0.2")
    await make_account(other, "taken@example.com")
    r = await client.post("/v1/auth/me/email", json={"new_email": "new@example.com"})
    assert r.status_code == 403 and error_code(r) == "sudo_required"
    await sudo(client)
    taken = await client.post("/v1/auth/me/email", json={"new_email": "taken@example.com"})
    free = await client.post("/v1/auth/me/email", json={"new_email": "new@example.com"})
    assert taken.status_code == free.status_code == 200 and taken.json() == free.json()
    await run_jobs()
    assert not [
        m
        for m in outbox(settings)
        if "Confirm your new" in str(m["Subject"]) and str(m["To"]) == "taken@example.com"
    ]
    token = last_link(settings, "new@example.com", r"token:\n([A-Za-z0-9_\-]+)")
    r = await client.post("/v1/auth/me/email/confirm", json={"token": token})
    assert r.status_code == 200, r.text
    # Every session was revoked; the new address signs in.
    assert (await client.get("/v1/auth/me")).status_code == 401
    r = await new_client("10.7.0.3").post(
        "/v1/auth/login", json={"email": "new@example.com", "password": PASSWORD}
    )
    assert r.status_code == 200


async def test_export_redacts_secrets(client, tmp_path):
    account = await make_account(client, "exp@example.com")
    await enroll_totp(client)
    r = await client.post("/v1/auth/me/export")
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["user"]["id"] == account.user_id and doc["user"]["password"] == "[redacted]"
    assert doc["mfa_factors"][0]["secret"] == "[redacted]"
    assert doc["memberships"][0]["org_id"] == account.org_id
    assert "hash" not in r.text and "argon2" not in r.text


async def test_delete_cascades(client, db, new_client, tmp_path):
    account = await make_account(client, "del@example.com")
    await enroll_totp(client)
    import subprocess

    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True
    )
    pub = (tmp_path / "k.pub").read_text()
    assert (
        await client.post("/v1/account/ssh-keys", json={"name": "k", "public_key": pub})
    ).status_code == 201
    r = await client.delete("/v1/auth/me")
    assert r.status_code == 403
    await sudo(client)
    assert (await client.delete("/v1/auth/me")).status_code == 204
    async with db.transaction() as s:
        deleted = (
            await s.execute(select(EventRecord).where(EventRecord.type == "user.deleted"))
        ).scalar_one()
        assert deleted.resource_id == account.user_id
        assert deleted.payload == {"personal_org_id": account.org_id}
        for model in (MfaFactor, SshKey):
            count = (await s.execute(select(func.count()).select_from(model))).scalar()
            assert count == 0
    r = await new_client("10.7.0.4").post(
        "/v1/auth/login", json={"email": "del@example.com", "password": PASSWORD}
    )
    assert r.status_code == 401
