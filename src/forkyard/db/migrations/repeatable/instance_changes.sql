-- Announce changes to where a running instance runs on `forkyard_instances`, so each API
-- process drops the route it cached for the exec hot path (compute/exec/claim.py `routes`,
-- db/changes.py). The payload is the instance's id, or empty (every route) for a server.
-- The function is 00_announce_change.sql's.
-- Repeatable: db/migrate.py runs this file after the Alembic migrations, every time.

DROP TRIGGER IF EXISTS forkyard_instance_changed ON instances;
CREATE TRIGGER forkyard_instance_changed
    AFTER DELETE OR UPDATE OF status, server_id, org_id
    ON instances FOR EACH ROW
    EXECUTE FUNCTION forkyard_announce_change('forkyard_instances', 'id');

-- Not on a heartbeat, which sets neither the address nor the secret.
DROP TRIGGER IF EXISTS forkyard_server_changed ON compute_servers;
CREATE TRIGGER forkyard_server_changed
    AFTER DELETE OR UPDATE OF url, secret_encrypted
    ON compute_servers FOR EACH STATEMENT
    EXECUTE FUNCTION forkyard_announce_change('forkyard_instances');

-- Before the shared function each file had its own; a database upgraded from then drops them.
DROP FUNCTION IF EXISTS forkyard_instance_changed();
DROP FUNCTION IF EXISTS forkyard_server_changed();
