"""endpoints.host: the host of the address an endpoint listens on, as its executor's start() returned it.

Revision ID: 0004_endpoint_host
Revises: 0003_endpoint_socket
Create Date: 2026-12-07

The front and the readiness probe read the address from the row (host, port, socket) instead of assuming the
loopback interface. Rows from before were all the local executor's, listening on 127.0.0.1: that is their host.
"""
from alembic import op
import sqlalchemy as sa

revision = "0004_endpoint_host"
down_revision = "0003_endpoint_socket"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.add_column(sa.Column("host", sa.String(length=255), nullable=True))
    op.execute("UPDATE endpoints SET host = '127.0.0.1' WHERE port IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.drop_column("host")
