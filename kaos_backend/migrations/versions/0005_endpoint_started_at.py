"""endpoints.started_at: when the endpoint's current start began, a fact of the endpoint controller's.

Revision ID: 0005_endpoint_started_at
Revises: 0004_endpoint_host
Create Date: 2026-12-07

The controller kept it inside the executor's state (`executor_state["started"]`, epoch seconds), which is the
executor's own and opaque to the rest: it moves to a column of its own, and out of the state.
"""
import json
from datetime import datetime, timezone

from alembic import op
import sqlalchemy as sa

revision = "0005_endpoint_started_at"
down_revision = "0004_endpoint_host"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.add_column(sa.Column("started_at", sa.DateTime(timezone=True), nullable=True))
    endpoints = sa.table("endpoints", sa.column("name", sa.String), sa.column("executor_state", sa.JSON),
                         sa.column("started_at", sa.DateTime(timezone=True)))
    connection = op.get_bind()
    for name, state in connection.execute(sa.select(endpoints.c.name, endpoints.c.executor_state)).all():
        state = json.loads(state) if isinstance(state, str) else state
        if not isinstance(state, dict) or "started" not in state:
            continue
        started = datetime.fromtimestamp(float(state.pop("started")), timezone.utc)
        connection.execute(endpoints.update().where(endpoints.c.name == name)
                           .values(started_at=started, executor_state=state))


def downgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.drop_column("started_at")
