"""egress policies: instances and profiles get `network` {egress, allow} (ADR 0015)

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # NULL on an existing instance: it had no network, and keeps none.
    op.add_column(
        "instances", sa.Column("network", postgresql.JSONB(astext_type=sa.Text()), nullable=True)
    )
    op.add_column(
        "profiles", sa.Column("network", postgresql.JSONB(astext_type=sa.Text()), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("profiles", "network")
    op.drop_column("instances", "network")
