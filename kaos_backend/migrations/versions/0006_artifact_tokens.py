"""artifact_tokens: job-scoped tokens with which a workload on another node fetches its inputs and hands back its
output (issue 11, the Kubernetes executor's pods; services/artifact_tokens.py).

Revision ID: 0006_artifact_tokens
Revises: 0005_endpoint_started_at
Create Date: 2026-12-09

A new table: nothing to carry over from older rows.
"""
from alembic import op
import sqlalchemy as sa

revision = "0006_artifact_tokens"
down_revision = "0005_endpoint_started_at"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "artifact_tokens",
        sa.Column("selector", sa.String(length=32), primary_key=True),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("workload", sa.String(length=80), nullable=False),
        sa.Column("job", sa.String(length=80), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_artifact_tokens_workload", "artifact_tokens", ["workload"])
    op.create_index("ix_artifact_tokens_job", "artifact_tokens", ["job"])


def downgrade() -> None:
    op.drop_index("ix_artifact_tokens_job", table_name="artifact_tokens")
    op.drop_index("ix_artifact_tokens_workload", table_name="artifact_tokens")
    op.drop_table("artifact_tokens")
