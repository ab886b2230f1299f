"""partitions.reason: how a training partition ended, in words (commit 91a62bd).

Revision ID: 0002_partition_reason
Revises: 0001_baseline
Create Date: 2026-11-30

A database made by `create_all` between that commit and the first migration already has the column (and was
stamped with the baseline): then there is nothing to add. (`--sql` output cannot look, and adds it.)
"""
from alembic import context, op
import sqlalchemy as sa

revision = "0002_partition_reason"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if context.is_offline_mode() or "reason" not in {
            column["name"] for column in sa.inspect(op.get_bind()).get_columns("partitions")}:
        with op.batch_alter_table("partitions") as batch:
            batch.add_column(sa.Column("reason", sa.String(length=1024), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("partitions") as batch:
        batch.drop_column("reason")
