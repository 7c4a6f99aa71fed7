-- The change-feed triggers as they were before the shared forkyard_announce_change() (the six
-- repeatable scripts at commit 3060b5f, in the order db/migrate.py ran them): a database
-- upgraded from then holds these functions and triggers. tests/db/test_change_triggers.py.

-- ---- auth_changes.sql
-- Announce every change to what an API key grants on the `forkyard_auth` channel, so each API
-- process can drop the keys it has cached (identity/key_cache.py). NOTIFY is delivered when the
-- changing transaction commits, and a trigger cannot be forgotten by a new code path.
-- Repeatable: db/migrate.py runs this file after the Alembic migrations, every time.

CREATE OR REPLACE FUNCTION forkyard_auth_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('forkyard_auth', '');  -- empty: every cached key
    RETURN NULL;
END
$$;

-- api_keys: not on a last-use stamp, which sets only last_used_at and last_used_ip.
DROP TRIGGER IF EXISTS forkyard_auth_changed ON api_keys;
CREATE TRIGGER forkyard_auth_changed
    AFTER DELETE OR UPDATE OF org_id, created_by, key_hash, scopes, expires_at, revoked_at
    ON api_keys FOR EACH STATEMENT EXECUTE FUNCTION forkyard_auth_changed();

-- users: a key stops working when its creator is deleted; an admin key's staff power follows
-- its creator's.
DROP TRIGGER IF EXISTS forkyard_auth_changed ON users;
CREATE TRIGGER forkyard_auth_changed
    AFTER DELETE OR UPDATE OF deleted_at, is_staff
    ON users FOR EACH STATEMENT EXECUTE FUNCTION forkyard_auth_changed();

-- ip_allowlist_entries: a cached key carries its org's allowlist.
DROP TRIGGER IF EXISTS forkyard_auth_changed ON ip_allowlist_entries;
CREATE TRIGGER forkyard_auth_changed
    AFTER INSERT OR UPDATE OR DELETE
    ON ip_allowlist_entries FOR EACH STATEMENT EXECUTE FUNCTION forkyard_auth_changed();

-- ---- instance_changes.sql
-- Announce changes to where a running instance runs on `forkyard_instances`, so each API
-- process drops the route it cached for the exec hot path (compute/exec/claim.py `routes`,
-- db/changes.py). The payload is the instance's id, or empty (every route) for a server.
-- Repeatable: db/migrate.py runs this file after the Alembic migrations, every time.

CREATE OR REPLACE FUNCTION forkyard_instance_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('forkyard_instances', OLD.id);
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS forkyard_instance_changed ON instances;
CREATE TRIGGER forkyard_instance_changed
    AFTER DELETE OR UPDATE OF status, server_id, org_id
    ON instances FOR EACH ROW EXECUTE FUNCTION forkyard_instance_changed();

CREATE OR REPLACE FUNCTION forkyard_server_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('forkyard_instances', '');
    RETURN NULL;
END
$$;

-- Not on a heartbeat, which sets neither the address nor the secret.
DROP TRIGGER IF EXISTS forkyard_server_changed ON compute_servers;
CREATE TRIGGER forkyard_server_changed
    AFTER DELETE OR UPDATE OF url, secret_encrypted
    ON compute_servers FOR EACH STATEMENT EXECUTE FUNCTION forkyard_server_changed();

-- ---- port_forward_changes.sql
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

-- ---- ssh_access_changes.sql
-- Announce every change to who may sign in to an instance over SSH, and where it runs, on
-- `forkyard_ssh_access`, so each API process drops the sign-ins it cached (ssh/access.py
-- `sign_ins`, db/changes.py). The payload is an instance's id, or empty (every instance).
-- A removed key or member must be refused on the very next connection, whatever removed it.
-- Repeatable: db/migrate.py runs this file after the Alembic migrations, every time.

CREATE OR REPLACE FUNCTION forkyard_ssh_access_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('forkyard_ssh_access', '');  -- empty: every cached instance
    RETURN NULL;
END
$$;

-- ssh_keys: not on the gateway's last-use stamp, which sets only last_used_at.
DROP TRIGGER IF EXISTS forkyard_ssh_access_changed ON ssh_keys;
CREATE TRIGGER forkyard_ssh_access_changed
    AFTER INSERT OR DELETE OR UPDATE OF user_id, fingerprint
    ON ssh_keys FOR EACH STATEMENT EXECUTE FUNCTION forkyard_ssh_access_changed();

-- memberships: a member added, removed, or given another role (only write roles sign in).
DROP TRIGGER IF EXISTS forkyard_ssh_access_changed ON memberships;
CREATE TRIGGER forkyard_ssh_access_changed
    AFTER INSERT OR DELETE OR UPDATE OF org_id, user_id, role
    ON memberships FOR EACH STATEMENT EXECUTE FUNCTION forkyard_ssh_access_changed();

DROP TRIGGER IF EXISTS forkyard_ssh_access_changed ON users;
CREATE TRIGGER forkyard_ssh_access_changed
    AFTER DELETE OR UPDATE OF deleted_at
    ON users FOR EACH STATEMENT EXECUTE FUNCTION forkyard_ssh_access_changed();

-- compute_servers: not on a heartbeat, which sets neither the address nor the secret.
DROP TRIGGER IF EXISTS forkyard_ssh_access_changed ON compute_servers;
CREATE TRIGGER forkyard_ssh_access_changed
    AFTER DELETE OR UPDATE OF url, secret_encrypted
    ON compute_servers FOR EACH STATEMENT EXECUTE FUNCTION forkyard_ssh_access_changed();

-- instances: one instance's entry. INSERT too: an id looked up before it existed is cached
-- as "no keys" (unknown and known instances must take the same time to refuse).
CREATE OR REPLACE FUNCTION forkyard_ssh_instance_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM pg_notify('forkyard_ssh_access', NEW.id);
    ELSE
        PERFORM pg_notify('forkyard_ssh_access', OLD.id);
    END IF;
    RETURN NULL;
END
$$;

-- Not on the activity stamp (last_activity_at), which every session and exec writes.
DROP TRIGGER IF EXISTS forkyard_ssh_instance_changed ON instances;
CREATE TRIGGER forkyard_ssh_instance_changed
    AFTER INSERT OR DELETE OR UPDATE OF status, server_id, org_id
    ON instances FOR EACH ROW EXECUTE FUNCTION forkyard_ssh_instance_changed();

-- ---- stream_announcements.sql
-- Announce new rows that live streams show (db/announcements.py): an event on `forkyard_events`
-- with its org id, an in-app notice on `forkyard_notifications` with its user id. The payload is
-- only a wake-up; streams read the rows themselves. NOTIFY is delivered when the inserting
-- transaction commits, and deduplicated within it (one wake per org per transaction).
-- Repeatable: db/migrate.py runs this file after the Alembic migrations, every time.

CREATE OR REPLACE FUNCTION forkyard_event_committed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.org_id IS NOT NULL THEN
        PERFORM pg_notify('forkyard_events', NEW.org_id);
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS forkyard_event_committed ON events;
CREATE TRIGGER forkyard_event_committed
    AFTER INSERT ON events FOR EACH ROW EXECUTE FUNCTION forkyard_event_committed();

CREATE OR REPLACE FUNCTION forkyard_notification_committed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.in_app THEN
        PERFORM pg_notify('forkyard_notifications', NEW.user_id);
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS forkyard_notification_committed ON notifications;
CREATE TRIGGER forkyard_notification_committed
    AFTER INSERT ON notifications FOR EACH ROW EXECUTE FUNCTION forkyard_notification_committed();

-- ---- webhook_endpoint_changes.sql
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
