-- Announce changes to an org's webhook endpoints on `forkyard_webhook_endpoints` with the org's
-- id, so each API process drops its cached answer to "does this org listen for this event
-- type" (webhooks/listening.py, db/changes.py): the exec hot path queues exec.finished's
-- fan-out job only when it does.
-- Repeatable: db/migrate.py runs this file after the Alembic migrations, every time.

CREATE OR REPLACE FUNCTION forkyard_webhook_endpoint_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('forkyard_webhook_endpoints', OLD.org_id);
    ELSE
        PERFORM pg_notify('forkyard_webhook_endpoints', NEW.org_id);
    END IF;
    RETURN NULL;
END
$$;

-- Not on a delivery's bookkeeping (failing_since, updated_at), which changes no answer.
DROP TRIGGER IF EXISTS forkyard_webhook_endpoint_changed ON webhook_endpoints;
CREATE TRIGGER forkyard_webhook_endpoint_changed
    AFTER INSERT OR DELETE OR UPDATE OF enabled, event_types, org_id
    ON webhook_endpoints FOR EACH ROW EXECUTE FUNCTION forkyard_webhook_endpoint_changed();
