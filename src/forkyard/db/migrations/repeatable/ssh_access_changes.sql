-- Announce every change to who may sign in to an instance over SSH, and where it runs, on
-- `forkyard_ssh_access`, so each API process drops the sign-ins it cached (ssh/access.py
-- `sign_ins`, db/changes.py). The payload is an instance's id, or empty (every instance).
-- A removed key or member must be refused on the very next connection, whatever removed it.
-- The function is 00_announce_change.sql's.
-- Repeatable: db/migrate.py runs this file after the Alembic migrations, every time.

-- ssh_keys: not on the gateway's last-use stamp, which sets only last_used_at.
DROP TRIGGER IF EXISTS forkyard_ssh_access_changed ON ssh_keys;
CREATE TRIGGER forkyard_ssh_access_changed
    AFTER INSERT OR DELETE OR UPDATE OF user_id, fingerprint
    ON ssh_keys FOR EACH STATEMENT
    EXECUTE FUNCTION forkyard_announce_change('forkyard_ssh_access');

-- memberships: a member added, removed, or given another role (only write roles sign in).
DROP TRIGGER IF EXISTS forkyard_ssh_access_changed ON memberships;
CREATE TRIGGER forkyard_ssh_access_changed
    AFTER INSERT OR DELETE OR UPDATE OF org_id, user_id, role
    ON memberships FOR EACH STATEMENT
    EXECUTE FUNCTION forkyard_announce_change('forkyard_ssh_access');

DROP TRIGGER IF EXISTS forkyard_ssh_access_changed ON users;
CREATE TRIGGER forkyard_ssh_access_changed
    AFTER DELETE OR UPDATE OF deleted_at
    ON users FOR EACH STATEMENT
    EXECUTE FUNCTION forkyard_announce_change('forkyard_ssh_access');

-- compute_servers: not on a heartbeat, which sets neither the address nor the secret.
DROP TRIGGER IF EXISTS forkyard_ssh_access_changed ON compute_servers;
CREATE TRIGGER forkyard_ssh_access_changed
    AFTER DELETE OR UPDATE OF url, secret_encrypted
    ON compute_servers FOR EACH STATEMENT
    EXECUTE FUNCTION forkyard_announce_change('forkyard_ssh_access');

-- instances: one instance's entry. INSERT too: an id looked up before it existed is cached
-- as "no keys" (unknown and known instances must take the same time to refuse).
-- Not on the activity stamp (last_activity_at), which every session and exec writes.
DROP TRIGGER IF EXISTS forkyard_ssh_instance_changed ON instances;
CREATE TRIGGER forkyard_ssh_instance_changed
    AFTER INSERT OR DELETE OR UPDATE OF status, server_id, org_id
    ON instances FOR EACH ROW
    EXECUTE FUNCTION forkyard_announce_change('forkyard_ssh_access', 'id');

-- Before the shared function each file had its own; a database upgraded from then drops them.
DROP FUNCTION IF EXISTS forkyard_ssh_access_changed();
DROP FUNCTION IF EXISTS forkyard_ssh_instance_changed();
