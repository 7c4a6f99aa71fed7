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
