-- The one trigger function behind every change feed (db/changes.py) and live stream
-- (db/announcements.py): `EXECUTE FUNCTION forkyard_announce_change(channel [, column])`.
-- Named to run first: db/migrate.py runs the repeatable scripts in name order, and the others
-- create triggers that call this.
--
-- Without a column it NOTIFYs an empty payload: every key.
-- With a column (row triggers only; one of the key columns below) it NOTIFYs `channel` with
-- that column's value in the row before the change (UPDATE, DELETE) and after it (INSERT,
-- UPDATE): the key whose cached entry or stream the change touched, under its old and its new
-- value when the change moved it. A NULL is announced as nothing (pg_notify would send it as
-- '', which means "every key").
-- A trigger's WHEN clause says which rows count (stream_announcements.sql).
-- NOTIFY is delivered when the changing transaction commits, and a trigger cannot be forgotten
-- by a new code path.

CREATE OR REPLACE FUNCTION forkyard_announce_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    channel text := TG_ARGV[0];
    col text := TG_ARGV[1];
    -- OLD is NULL for an INSERT and NEW for a DELETE, and so is the key read from either.
    old_key text;
    new_key text;
BEGIN
    IF col IS NULL THEN
        PERFORM pg_notify(channel, '');
        RETURN NULL;
    END IF;
    IF TG_LEVEL <> 'ROW' THEN
        RAISE EXCEPTION 'forkyard_announce_change: column % on a statement trigger (no row)', col;
    END IF;
    -- plpgsql reads a field of OLD or NEW only by its name, hence a branch per key column (a
    -- branch runs only when taken, so naming columns other tables lack is fine). Reading the
    -- column by a name held in a variable (to_jsonb(OLD) ->> col, or dynamic SQL) made a status
    -- change on instances 3x dearer per row, with its three triggers.
    CASE col
        WHEN 'id' THEN
            old_key := OLD.id;
            new_key := NEW.id;
        WHEN 'org_id' THEN
            old_key := OLD.org_id;
            new_key := NEW.org_id;
        WHEN 'instance_id' THEN
            old_key := OLD.instance_id;
            new_key := NEW.instance_id;
        WHEN 'user_id' THEN
            old_key := OLD.user_id;
            new_key := NEW.user_id;
        ELSE
            -- Not silence: a misspelt column would leave caches stale without a sound.
            RAISE EXCEPTION 'forkyard_announce_change: no column % here (add its branch)', col;
    END CASE;
    IF old_key IS NOT NULL THEN
        PERFORM pg_notify(channel, old_key);
    END IF;
    IF new_key IS NOT NULL AND new_key IS DISTINCT FROM old_key THEN
        PERFORM pg_notify(channel, new_key);
    END IF;
    RETURN NULL;
END
$$;
