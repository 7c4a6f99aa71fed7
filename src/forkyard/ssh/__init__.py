"""The SSH gateway (tag ssh): `ssh {instance_id}@host` into an instance with the account's SSH
keys, a shell, commands, SFTP and local forwarding (docs/adr/0014-ssh-gateway.md)."""
