"""SSH keys: OpenSSH format, ed25519/ECDSA/RSA>=2048, fingerprints, unique per account."""

from __future__ import annotations

import subprocess

from tests.helpers import error_code, make_account


def _keygen(tmp_path, kind: str, bits: int | None = None) -> tuple[str, str]:
    path = tmp_path / f"id_{kind}_{bits}"
    args = ["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path), "-C", "me@laptop"]
    if bits:
        args += ["-b", str(bits)]
    subprocess.run(args, check=True)
    public = (tmp_path / f"{path.name}.pub").read_text().strip()
    fp = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", f"{path}.pub"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()[1]
    return public, fp


async def test_add_list_delete_and_validation(client, new_client, tmp_path):
    await make_account(client, "ssh@example.com")
    for kind, bits in (("ed25519", None), ("ecdsa", 256), ("rsa", 2048)):
        public, fp = _keygen(tmp_path, kind, bits)
        r = await client.post("/v1/account/ssh-keys", json={"name": kind, "public_key": public})
        assert r.status_code == 201, r.text
        assert r.json()["fingerprint"] == fp  # the same as OpenSSH prints
    dup = await client.post("/v1/account/ssh-keys", json={"name": "again", "public_key": public})
    assert dup.status_code == 409 and error_code(dup) == "ssh_key_exists"
    weak, _ = _keygen(tmp_path, "rsa", 1024)
    r = await client.post("/v1/account/ssh-keys", json={"name": "weak", "public_key": weak})
    assert r.status_code == 422 and error_code(r) == "validation_failed"
    r = await client.post(
        "/v1/account/ssh-keys", json={"name": "junk", "public_key": "ssh-ed25519 AAAAnotbase64!!"}
    )
    assert r.status_code == 422
    listed = (await client.get("/v1/account/ssh-keys")).json()
    assert [k["name"] for k in listed["data"]] == ["rsa", "ecdsa", "ed25519"]
    # Another account can add the same key, but cannot see or delete ours.
    other = new_client("10.5.0.2")
    await make_account(other, "ssh2@example.com")
    assert (await other.get("/v1/account/ssh-keys")).json()["data"] == []
    key_id = listed["data"][0]["id"]
    assert (await other.delete(f"/v1/account/ssh-keys/{key_id}")).status_code == 404
    assert (await client.delete("/v1/account/ssh-keys/inst_123")).status_code == 404
    assert (await client.delete(f"/v1/account/ssh-keys/{key_id}")).status_code == 204
    assert len((await client.get("/v1/account/ssh-keys")).json()["data"]) == 2
