"""What each change-feed trigger announces (db/migrations/repeatable/): for every kind of change
to the tables behind the caches and live streams, exactly which (channel, payload) pairs a
listener hears once the change commits, and that nothing is heard for the changes the caches do
not care about (a heartbeat, a last-use stamp, an activity stamp). Run on a fresh database and on
one upgraded from the triggers' previous shape (one function per trigger), which must end with
the shared function only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from forkyard.db.engine import libpq_url
from forkyard.db.migrate import upgrade

CHANNELS = (
    "forkyard_auth",
    "forkyard_instances",
    "forkyard_previews",
    "forkyard_ssh_access",
    "forkyard_webhook_endpoints",
    "forkyard_events",
    "forkyard_notifications",
)
# Sent after each change has committed: everything the change announced arrives before it.
MARK = "forkyard_test_mark"
PREVIOUS = Path(__file__).with_name("previous_change_triggers.sql")

AUTH, INSTANCES, PREVIEWS = "forkyard_auth", "forkyard_instances", "forkyard_previews"
SSH, WEBHOOKS = "forkyard_ssh_access", "forkyard_webhook_endpoints"
EVENTS, NOTICES = "forkyard_events", "forkyard_notifications"


class Feed:
    def __init__(self, url: str) -> None:
        self.listener = psycopg.connect(url, autocommit=True)
        for channel in (*CHANNELS, MARK):
            self.listener.execute(f"LISTEN {channel}")
        self.writer = psycopg.connect(url, autocommit=True)
        self.marks = 0

    def heard(self, *statements: str, **params: Any) -> list[tuple[str, str]]:
        """Run the statements in one transaction; what the listener heard, sorted."""
        with self.writer.transaction():
            for statement in statements:
                self.writer.execute(statement, params or None)
        self.marks += 1
        self.writer.execute("SELECT pg_notify(%s, %s)", (MARK, str(self.marks)))
        heard = []
        for notice in self.listener.notifies(timeout=10):
            if notice.channel == MARK:
                assert notice.payload == str(self.marks)
                break
            heard.append((notice.channel, notice.payload))
        else:
            raise AssertionError("the mark never arrived")
        return sorted(heard)

    def close(self) -> None:
        self.listener.close()
        self.writer.close()


def _server(id: str) -> str:
    return (
        "INSERT INTO compute_servers (id, name, url, secret_encrypted, status, driver,"
        " driver_version, cpus, memory_mb, disk_mb, disk_free_mb, slots, running_instances,"
        f" metrics, created_at) VALUES ('{id}', '{id}', 'http://127.0.0.1:9', 'x', 'active',"
        " 'sandbox', '1', 2, 1024, 1024, 1024, 4, 0, '{}', now())"
    )


def _instance(id: str, org: str, server: str) -> str:
    return (
        "INSERT INTO instances (id, org_id, server_id, name, status, image, vcpus, memory_mb,"
        " disk_mb, env, labels, setup_commands, setup_done, last_activity_at, created_at)"
        f" VALUES ('{id}', '{org}', '{server}', 'i', 'running', 'base', 1, 256, 1024, '{{}}',"
        " '{}', '{}', true, now(), now())"
    )


def _webhook(id: str, org: str) -> str:
    return (
        "INSERT INTO webhook_endpoints (id, org_id, url, event_types, enabled, secret_sealed,"
        f" created_at) VALUES ('{id}', '{org}', 'https://example.com/h', '[]', true, 'x', now())"
    )


def _event(id: str, org: str | None) -> str:
    org_sql = f"'{org}'" if org else "NULL"
    return (
        "INSERT INTO events (id, org_id, type, version, resource_type, resource_id, actor_type,"
        f" payload, created_at) VALUES ('{id}', {org_sql}, 'instance.running', 1, 'instance',"
        " 'ins_a', 'system', '{}', now())"
    )


def _notice(id: str, user: str, in_app: bool) -> str:
    return (
        "INSERT INTO notifications (id, user_id, category, kind, title, body, data, event_id,"
        f" in_app, emailed, created_at) VALUES ('{id}', '{user}', 'security', 'k', 't', 'b',"
        f" '{{}}', '{id}', {str(in_app).lower()}, false, now())"
    )


def walk_every_change(feed: Feed) -> None:
    """Each kind of change and what it must announce, in order (each builds on the last)."""
    assert (
        feed.heard(
            "INSERT INTO orgs (id, name, is_personal, created_at) VALUES"
            " ('org_a', 'a', false, now()), ('org_b', 'b', false, now())",
            "INSERT INTO users (id, email, name, is_staff, failed_logins, created_at) VALUES"
            " ('usr_a', 'a@example.com', 'a', false, 0, now())",
            _server("srv_a"),
            _server("srv_b"),
        )
        == []
    )

    # API keys: a new key changes no cached grant; a last-use stamp neither.
    key = (
        "INSERT INTO api_keys (id, org_id, created_by, name, prefix, key_hash, scopes,"
        " is_internal, created_at) VALUES ('key_a', 'org_a', 'usr_a', 'k', 'p', 'h',"
        " '{instances:read}', false, now())"
    )
    assert feed.heard(key) == []
    assert feed.heard("UPDATE api_keys SET last_used_at = now()") == []
    assert feed.heard("UPDATE api_keys SET revoked_at = now()") == [(AUTH, "")]
    assert feed.heard("DELETE FROM api_keys") == [(AUTH, "")]
    assert feed.heard("UPDATE users SET is_staff = true") == [(AUTH, "")]
    assert feed.heard("UPDATE users SET name = 'renamed'") == []
    allow = (
        "INSERT INTO ip_allowlist_entries (id, org_id, cidr, description, created_at)"
        " VALUES ('ipa_a', 'org_a', '192.0.2.0/24', '', now())"
    )
    assert feed.heard(allow) == [(AUTH, "")]
    assert feed.heard("DELETE FROM ip_allowlist_entries") == [(AUTH, "")]

    # Instances: made (only the SSH sign-ins, which cache unknown ids), then by column.
    assert feed.heard(_instance("ins_a", "org_a", "srv_a")) == [(SSH, "ins_a")]
    assert feed.heard(_instance("ins_b", "org_a", "srv_b")) == [(SSH, "ins_b")]
    assert feed.heard("UPDATE instances SET last_activity_at = now()") == []
    assert feed.heard("UPDATE instances SET status = 'stopped' WHERE id = 'ins_a'") == [
        (INSTANCES, "ins_a"),
        (PREVIEWS, "ins_a"),
        (SSH, "ins_a"),
    ]
    # One statement, two rows: one announcement per row per channel.
    assert feed.heard("UPDATE instances SET org_id = 'org_b'") == [
        (INSTANCES, "ins_a"),
        (INSTANCES, "ins_b"),
        (PREVIEWS, "ins_a"),
        (PREVIEWS, "ins_b"),
        (SSH, "ins_a"),
        (SSH, "ins_b"),
    ]

    # Servers: a heartbeat is silent; an address or secret empties every entry.
    assert feed.heard("UPDATE compute_servers SET last_heartbeat_at = now()") == []
    assert feed.heard("UPDATE compute_servers SET url = 'http://127.0.0.1:10'") == [
        (INSTANCES, ""),
        (PREVIEWS, ""),
        (SSH, ""),
    ]
    assert feed.heard("UPDATE compute_servers SET secret_encrypted = 'y'") == [
        (INSTANCES, ""),
        (PREVIEWS, ""),
        (SSH, ""),
    ]

    # Port forwards: the instance before and after the change.
    forward = (
        "INSERT INTO port_forwards (id, org_id, instance_id, port, protocol, visibility,"
        " created_at) VALUES ('pfw_a', 'org_b', 'ins_a', 8080, 'http', 'private', now())"
    )
    assert feed.heard(forward) == [(PREVIEWS, "ins_a")]
    assert feed.heard("UPDATE port_forwards SET visibility = 'public'") == [(PREVIEWS, "ins_a")]
    assert feed.heard("UPDATE port_forwards SET instance_id = 'ins_b'") == [
        (PREVIEWS, "ins_a"),
        (PREVIEWS, "ins_b"),
    ]
    assert feed.heard("DELETE FROM port_forwards") == [(PREVIEWS, "ins_b")]

    # SSH keys and members: every instance's sign-ins.
    ssh_key = (
        "INSERT INTO ssh_keys (id, user_id, name, key_type, public_key, fingerprint, created_at)"
        " VALUES ('ssh_a', 'usr_a', 'k', 'ssh-ed25519', 'AAAA', 'SHA256:a', now())"
    )
    assert feed.heard(ssh_key) == [(SSH, "")]
    assert feed.heard("UPDATE ssh_keys SET last_used_at = now()") == []
    assert feed.heard("UPDATE ssh_keys SET name = 'renamed'") == []
    assert feed.heard("DELETE FROM ssh_keys") == [(SSH, "")]
    member = (
        "INSERT INTO memberships (id, org_id, user_id, role, created_at)"
        " VALUES ('mem_a', 'org_b', 'usr_a', 'member', now())"
    )
    assert feed.heard(member) == [(SSH, "")]
    assert feed.heard("UPDATE memberships SET role = 'viewer'") == [(SSH, "")]
    assert feed.heard("DELETE FROM memberships") == [(SSH, "")]

    # Webhook endpoints: the org whose answer changed; not a delivery's bookkeeping.
    assert feed.heard(_webhook("whe_a", "org_a")) == [(WEBHOOKS, "org_a")]
    assert feed.heard("UPDATE webhook_endpoints SET failing_since = now()") == []
    assert feed.heard("UPDATE webhook_endpoints SET enabled = false") == [(WEBHOOKS, "org_a")]
    assert feed.heard("UPDATE webhook_endpoints SET event_types = '[\"a\"]'") == [
        (WEBHOOKS, "org_a")
    ]
    # Moved to another org: both orgs' answers changed.
    assert feed.heard("UPDATE webhook_endpoints SET org_id = 'org_b'") == [
        (WEBHOOKS, "org_a"),
        (WEBHOOKS, "org_b"),
    ]
    assert feed.heard("DELETE FROM webhook_endpoints") == [(WEBHOOKS, "org_b")]

    # Live streams: an event with an org wakes that org's streams, one without wakes none; an
    # in-app notice wakes its user's, an email-only one nobody's. One wake per key and commit.
    assert feed.heard(_event("evt_a", "org_a"), _event("evt_b", "org_a")) == [(EVENTS, "org_a")]
    assert feed.heard(_event("evt_c", None)) == []
    assert feed.heard("UPDATE events SET type = 'instance.stopped'") == []
    assert feed.heard(_notice("ntf_a", "usr_a", True)) == [(NOTICES, "usr_a")]
    assert feed.heard(_notice("ntf_b", "usr_a", False)) == []

    # Deleting a user: its keys and its sign-ins (its notices cascade silently).
    assert feed.heard("UPDATE users SET deleted_at = now()") == [(AUTH, ""), (SSH, "")]

    # Instances and servers deleted.
    assert feed.heard("DELETE FROM instances WHERE id = 'ins_a'") == [
        (INSTANCES, "ins_a"),
        (PREVIEWS, "ins_a"),
        (SSH, "ins_a"),
    ]
    assert feed.heard("DELETE FROM instances", "DELETE FROM compute_servers") == [
        (INSTANCES, ""),
        (INSTANCES, "ins_b"),
        (PREVIEWS, ""),
        (PREVIEWS, "ins_b"),
        (SSH, ""),
        (SSH, "ins_b"),
    ]
    assert feed.heard("DELETE FROM users") == [(AUTH, ""), (SSH, "")]


@pytest.fixture
def feed(database_url: str) -> Iterator[Feed]:
    feed = Feed(libpq_url(database_url))
    yield feed
    feed.close()


def triggers_and_functions(url: str) -> tuple[set[tuple[str, str, str]], set[str]]:
    with psycopg.connect(url) as conn:
        triggers = conn.execute(
            "SELECT t.tgrelid::regclass::text, t.tgname, p.proname FROM pg_trigger t"
            " JOIN pg_proc p ON p.oid = t.tgfoid"
            " WHERE NOT t.tgisinternal AND t.tgname LIKE 'forkyard%'"
        ).fetchall()
        functions = conn.execute(
            "SELECT proname FROM pg_proc WHERE prorettype = 'trigger'::regtype"
            " AND pronamespace = 'public'::regnamespace"
        ).fetchall()
    return {(row[0], row[1], row[2]) for row in triggers}, {row[0] for row in functions}


def test_every_change_announces_what_it_did(feed: Feed) -> None:
    walk_every_change(feed)


def test_an_upgraded_database_keeps_only_the_shared_function(
    database_url: str, template_url: str
) -> None:
    url = libpq_url(database_url)
    fresh = triggers_and_functions(url)
    # A database as the previous release left it: one function per trigger.
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(PREVIOUS.read_bytes())
    assert triggers_and_functions(url) != fresh
    upgrade(database_url)
    assert triggers_and_functions(url) == fresh
    triggers, functions = fresh
    assert functions == {"forkyard_announce_change"}
    assert {function for _, _, function in triggers} == {"forkyard_announce_change"}
    assert len(triggers) == 16
    feed = Feed(url)
    try:
        walk_every_change(feed)
    finally:
        feed.close()
    upgrade(database_url)  # and again: every repeatable script runs on every start
    assert triggers_and_functions(url) == fresh


@pytest.mark.parametrize(("level", "column"), [("ROW", "idd"), ("STATEMENT", "id")])
def test_a_trigger_naming_a_column_it_cannot_read_fails_the_change(
    database_url: str, level: str, column: str
) -> None:
    """A misspelt column, or a column on a statement trigger (no row), must not quietly announce
    nothing: the caches would go stale. The change fails instead, and tests find it."""
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        conn.execute(
            f"CREATE TRIGGER misread AFTER INSERT ON orgs FOR EACH {level}"
            f" EXECUTE FUNCTION forkyard_announce_change('forkyard_test', '{column}')"
        )
        with pytest.raises(psycopg.errors.RaiseException, match="forkyard_announce_change"):
            conn.execute(
                "INSERT INTO orgs (id, name, is_personal, created_at)"
                " VALUES ('org_x', 'x', false, now())"
            )
        assert conn.execute("SELECT count(*) FROM orgs").fetchone() == (0,)
