"""train_pipelines.held_until: a deploy of several inputs holds its pipeline until its last input arrives.

Revision ID: 0008_pipeline_hold
Revises: 0007_notebooks
Create Date: 2026-12-01

`kaos train deploy -s code -d data -h grid.json` uploads its inputs one by one, and each upload moves the pipeline:
without a hold the data's upload scheduled a training of (code, data, no hyperparameters) before the
hyperparameters arrived. The CLI now marks every upload but the last with `inputs_follow=true`; the pipeline is not
scheduled while `held_until` lies ahead (services/train.py).
"""
from alembic import op
import sqlalchemy as sa

revision = "0008_pipeline_hold"
down_revision = "0007_notebooks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("train_pipelines") as batch:
        batch.add_column(sa.Column("held_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("train_pipelines") as batch:
        batch.drop_column("held_until")
