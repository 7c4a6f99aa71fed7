-- Announce changes to where a preview request goes on `forkyard_previews`, so each API process
-- drops what it cached for the preview proxy (forwards/service.py `previews`, db/changes.py):
-- a forward made, changed or deleted, an instance's status, server or org, a server's address.
-- The payload is the instance's id, or empty (every instance) for a server.
-- Repeatable: db/migrate.py runs this file after the Alembic migrations, every time.

CREATE OR REPLACE FUNCTION forkyard_port_forward_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM pg_notify('forkyard_previews', OLD.instance_id);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM pg_notify('forkyard_previews', NEW.instance_id);
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS forkyard_port_forward_changed ON port_forwards;
CREATE TRIGGER forkyard_port_forward_changed
    AFTER INSERT OR UPDATE OR DELETE
    ON port_forwards FOR EACH ROW EXECUTE FUNCTION forkyard_port_forward_changed();

CREATE OR REPLACE FUNCTION forkyard_preview_instance_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('forkyard_previews', OLD.id);
    RETURN NULL;
END
$$;

-- Not on an activity stamp (last_activity_at), which preview traffic itself writes.
DROP TRIGGER IF EXISTS forkyard_preview_instance_changed ON instances;
CREATE TRIGGER forkyard_preview_instance_changed
    AFTER DELETE OR UPDATE OF status, server_id, org_id
    ON instances FOR EACH ROW EXECUTE FUNCTION forkyard_preview_instance_changed();

CREATE OR REPLACE FUNCTION forkyard_preview_server_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('forkyard_previews', '');
    RETURN NULL;
END
$$;

-- Not on a heartbeat, which sets neither the address nor the secret.
DROP TRIGGER IF EXISTS forkyard_preview_server_changed ON compute_servers;
CREATE TRIGGER forkyard_preview_server_changed
    AFTER DELETE OR UPDATE OF url, secret_encrypted
    ON compute_servers FOR EACH STATEMENT EXECUTE FUNCTION forkyard_preview_server_changed();
