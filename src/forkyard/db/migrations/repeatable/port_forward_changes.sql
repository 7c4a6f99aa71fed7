-- Announce changes to where a preview request goes on `forkyard_previews`, so each API process
-- drops what it cached for the preview proxy (forwards/service.py `previews`, db/changes.py):
-- a forward made, changed or deleted, an instance's status, server or org, a server's address.
-- The payload is the instance's id (a forward's instance before and after the change), or
-- empty (every instance) for a server. The function is 00_announce_change.sql's.
-- Repeatable: db/migrate.py runs this file after the Alembic migrations, every time.

DROP TRIGGER IF EXISTS forkyard_port_forward_changed ON port_forwards;
CREATE TRIGGER forkyard_port_forward_changed
    AFTER INSERT OR UPDATE OR DELETE
    ON port_forwards FOR EACH ROW
    EXECUTE FUNCTION forkyard_announce_change('forkyard_previews', 'instance_id');

-- Not on an activity stamp (last_activity_at), which preview traffic itself writes.
DROP TRIGGER IF EXISTS forkyard_preview_instance_changed ON instances;
CREATE TRIGGER forkyard_preview_instance_changed
    AFTER DELETE OR UPDATE OF status, server_id, org_id
    ON instances FOR EACH ROW
    EXECUTE FUNCTION forkyard_announce_change('forkyard_previews', 'id');

-- Not on a heartbeat, which sets neither the address nor the secret.
DROP TRIGGER IF EXISTS forkyard_preview_server_changed ON compute_servers;
CREATE TRIGGER forkyard_preview_server_changed
    AFTER DELETE OR UPDATE OF url, secret_encrypted
    ON compute_servers FOR EACH STATEMENT
    EXECUTE FUNCTION forkyard_announce_change('forkyard_previews');

-- Before the shared function each file had its own; a database upgraded from then drops them.
DROP FUNCTION IF EXISTS forkyard_port_forward_changed();
DROP FUNCTION IF EXISTS forkyard_preview_instance_changed();
DROP FUNCTION IF EXISTS forkyard_preview_server_changed();
