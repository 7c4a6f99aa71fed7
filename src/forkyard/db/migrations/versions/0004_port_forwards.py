"""port forwards: one row per forwarded port of an instance, gone with the instance

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "port_forwards",
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("instance_id", sa.String(length=40), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("protocol", sa.String(length=10), nullable=False),
        sa.Column("visibility", sa.String(length=10), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("created_by", sa.String(length=40), nullable=True),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["instance_id"],
            ["instances.id"],
            name=op.f("fk_port_forwards_instance_id_instances"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_port_forwards")),
        sa.UniqueConstraint("instance_id", "port", name=op.f("uq_port_forwards_instance_id")),
    )
    op.create_index(op.f("ix_port_forwards_org_id"), "port_forwards", ["org_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_port_forwards_org_id"), table_name="port_forwards")
    op.drop_table("port_forwards")
