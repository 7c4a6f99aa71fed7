-- Announce new rows that live streams show (db/announcements.py): an event on `forkyard_events`
-- with its org id (none for an event without an org), an in-app notice on
-- `forkyard_notifications` with its user id. The payload is only a wake-up; streams read the
-- rows themselves. NOTIFY is delivered when the inserting transaction commits, and deduplicated
-- within it (one wake per org per transaction). The function is 00_announce_change.sql's.
-- Repeatable: db/migrate.py runs this file after the Alembic migrations, every time.

DROP TRIGGER IF EXISTS forkyard_event_committed ON events;
CREATE TRIGGER forkyard_event_committed
    AFTER INSERT ON events FOR EACH ROW
    EXECUTE FUNCTION forkyard_announce_change('forkyard_events', 'org_id');

-- An email-only notice wakes no stream.
DROP TRIGGER IF EXISTS forkyard_notification_committed ON notifications;
CREATE TRIGGER forkyard_notification_committed
    AFTER INSERT ON notifications FOR EACH ROW WHEN (NEW.in_app)
    EXECUTE FUNCTION forkyard_announce_change('forkyard_notifications', 'user_id');

-- Before the shared function each file had its own; a database upgraded from then drops them.
DROP FUNCTION IF EXISTS forkyard_event_committed();
DROP FUNCTION IF EXISTS forkyard_notification_committed();
