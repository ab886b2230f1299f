"""notebooks: one JupyterLab per workspace and user (kaos notebook deploy|list|logs|build-logs|kill).

Revision ID: 0007_notebooks
Revises: 0006_artifact_tokens
Create Date: 2026-12-10

A table of its own beside `endpoints` (which it resembles): its token is kept as a SHA-256 only, and what it
reads (data bundles, a model) is recorded for the scheduler to attach read-only.
"""
from alembic import op
import sqlalchemy as sa

revision = "0007_notebooks"
down_revision = "0006_artifact_tokens"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notebooks",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("workspace_id", sa.Integer, sa.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
        sa.Column("user", sa.String(128), nullable=False),
        sa.Column("source_bundle_id", sa.Integer, sa.ForeignKey("bundles.id", ondelete="SET NULL"), nullable=True),
        sa.Column("build_job_id", sa.String(32), nullable=True),
        sa.Column("data_bundle_ids", sa.JSON, nullable=True),
        sa.Column("model_id", sa.String(64), nullable=True),
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("desired", sa.String(8), nullable=False),
        sa.Column("image", sa.String(1024), nullable=True),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("port", sa.Integer, nullable=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("restarts", sa.Integer, nullable=False),
        sa.Column("retry_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resources", sa.JSON, nullable=True),
        sa.Column("reason", sa.String(1024), nullable=True),
        sa.Column("executor_state", sa.JSON, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_notebooks_workspace_id", "notebooks", ["workspace_id"])


def downgrade() -> None:
    op.drop_index("ix_notebooks_workspace_id", table_name="notebooks")
    op.drop_table("notebooks")
