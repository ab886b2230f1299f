"""endpoints.socket: the unix socket path a local endpoint was offered to listen on (KAOS_SOCKET), beside its port.

Revision ID: 0003_endpoint_socket
Revises: 0002_partition_reason
Create Date: 2026-11-30

Null for the endpoints of other executors and for rows from before: the front then reaches them over TCP.
"""
from alembic import op
import sqlalchemy as sa

revision = "0003_endpoint_socket"
down_revision = "0002_partition_reason"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.add_column(sa.Column("socket", sa.String(length=108), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.drop_column("socket")
