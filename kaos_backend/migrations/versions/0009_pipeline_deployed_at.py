"""train_pipelines.deployed_at: when a deploy last moved the pipeline.

Revision ID: 0009_pipeline_deployed_at
Revises: 0008_pipeline_hold
Create Date: 2026-12-02

A combination trained already gets a new train job only when its last one failed or was killed and a deploy gives
other limits (services/train_retry.py `tried_again`). The scheduler compared the limits only: limits given while
the job still ran (which started nothing then) started a new job the moment that job was killed, so `train kill`
seemed not to work. The deploy now has to come after the job ended; rows made before this revision take their
updated_at (every upload changed it).
"""
from alembic import op
import sqlalchemy as sa

revision = "0009_pipeline_deployed_at"
down_revision = "0008_pipeline_hold"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("train_pipelines") as batch:
        batch.add_column(sa.Column("deployed_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE train_pipelines SET deployed_at = updated_at")


def downgrade() -> None:
    with op.batch_alter_table("train_pipelines") as batch:
        batch.drop_column("deployed_at")
