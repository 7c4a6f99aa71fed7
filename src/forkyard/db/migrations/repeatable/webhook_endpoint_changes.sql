-- Announce changes to an org's webhook endpoints on `forkyard_webhook_endpoints` with the org's
-- id (both orgs, for an endpoint moved from one to another), so each API process drops its
-- cached answer to "does this org listen for this event type" (webhooks/listening.py,
-- db/changes.py): the exec hot path queues exec.finished's fan-out job only when it does.
-- The function is 00_announce_change.sql's.
-- Repeatable: db/migrate.py runs this file after the Alembic migrations, every time.

-- Not on a delivery's bookkeeping (failing_since, updated_at), which changes no answer.
DROP TRIGGER IF EXISTS forkyard_webhook_endpoint_changed ON webhook_endpoints;
CREATE TRIGGER forkyard_webhook_endpoint_changed
    AFTER INSERT OR DELETE OR UPDATE OF enabled, event_types, org_id
    ON webhook_endpoints FOR EACH ROW
    EXECUTE FUNCTION forkyard_announce_change('forkyard_webhook_endpoints', 'org_id');

-- Before the shared function each file had its own; a database upgraded from then drops them.
DROP FUNCTION IF EXISTS forkyard_webhook_endpoint_changed();
