-- Announce every change to what an API key grants on the `forkyard_auth` channel, so each API
-- process can drop the keys it has cached (identity/key_cache.py). The payload is empty: every
-- cached key. The function is 00_announce_change.sql's.
-- Repeatable: db/migrate.py runs this file after the Alembic migrations, every time.

-- api_keys: not on a last-use stamp, which sets only last_used_at and last_used_ip.
DROP TRIGGER IF EXISTS forkyard_auth_changed ON api_keys;
CREATE TRIGGER forkyard_auth_changed
    AFTER DELETE OR UPDATE OF org_id, created_by, key_hash, scopes, expires_at, revoked_at
    ON api_keys FOR EACH STATEMENT EXECUTE FUNCTION forkyard_announce_change('forkyard_auth');

-- users: a key stops working when its creator is deleted; an admin key's staff power follows
-- its creator's.
DROP TRIGGER IF EXISTS forkyard_auth_changed ON users;
CREATE TRIGGER forkyard_auth_changed
    AFTER DELETE OR UPDATE OF deleted_at, is_staff
    ON users FOR EACH STATEMENT EXECUTE FUNCTION forkyard_announce_change('forkyard_auth');

-- ip_allowlist_entries: a cached key carries its org's allowlist.
DROP TRIGGER IF EXISTS forkyard_auth_changed ON ip_allowlist_entries;
CREATE TRIGGER forkyard_auth_changed
    AFTER INSERT OR UPDATE OR DELETE
    ON ip_allowlist_entries FOR EACH STATEMENT
    EXECUTE FUNCTION forkyard_announce_change('forkyard_auth');

-- Before the shared function each file had its own; a database upgraded from then drops them.
DROP FUNCTION IF EXISTS forkyard_auth_changed();
