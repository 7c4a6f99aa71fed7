"""domain events: the events table and the record of which subscriber handled which event

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("org_id", sa.String(length=40), nullable=True),
        sa.Column("type", sa.String(length=80), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("resource_type", sa.String(length=40), nullable=False),
        sa.Column("resource_id", sa.String(length=40), nullable=False),
        sa.Column("actor_type", sa.String(length=20), nullable=False),
        sa.Column("actor_id", sa.String(length=40), nullable=True),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_index("ix_events_org_created", "events", ["org_id", "created_at"])
    op.create_index("ix_events_resource", "events", ["resource_type", "resource_id", "created_at"])
    op.create_table(
        "event_subscriber_runs",
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("subscriber", sa.String(length=200), nullable=False),
        sa.Column("ran_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id", "subscriber", name=op.f("pk_event_subscriber_runs")),
    )


def downgrade() -> None:
    op.drop_table("event_subscriber_runs")
    op.drop_index("ix_events_resource", table_name="events")
    op.drop_index("ix_events_org_created", table_name="events")
    op.drop_table("events")
