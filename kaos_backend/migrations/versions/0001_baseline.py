"""Baseline: the schema kaos made with `create_all` before it had migrations (as of commit 509d747).

Revision ID: 0001_baseline
Revises:
Create Date: 2026-11-30

A database made by that `create_all` has exactly these tables and no `alembic_version`; kaos stamps it with this
revision instead of running it (kaos_backend/migrations/upgrade.py). Frozen: never import the models here.
"""
from alembic import op
import sqlalchemy as sa

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None

USER = 128  # models.MAX_USER when this revision was written


def _when(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _text(name: str, length: int, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.String(length=length), nullable=nullable)


def _json(name: str) -> sa.Column:
    return sa.Column(name, sa.JSON(), nullable=True)


def _bundle_ref(name: str) -> list:
    """A nullable reference to a bundle that survives the bundle's deletion (SET NULL)."""
    return [sa.Column(name, sa.Integer(), nullable=True),
            sa.ForeignKeyConstraint([name], ["bundles.id"], ondelete="SET NULL")]


def _workspace_ref(nullable: bool = False) -> list:
    return [sa.Column("workspace_id", sa.Integer(), nullable=nullable),
            sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE")]


def upgrade() -> None:
    op.create_table(
        "blobs",
        _text("digest", 64, nullable=False),
        _text("hash5", 5, nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        _when("created_at", nullable=False),
        sa.PrimaryKeyConstraint("digest"),
    )
    op.create_table(
        "workspaces",
        sa.Column("id", sa.Integer(), nullable=False),
        _text("name", 64, nullable=False),
        _text("user", USER, nullable=False),
        _when("created_at", nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "bundles",
        sa.Column("id", sa.Integer(), nullable=False),
        *_workspace_ref(),
        _text("kind", 32, nullable=False),
        _text("glob_name", 300, nullable=False),
        _text("root_name", 255, nullable=False),
        _text("hash5", 5, nullable=False),
        _text("blob_digest", 64, nullable=False),
        _text("user", USER, nullable=False),
        _when("created_at", nullable=False),
        _json("meta"),
        sa.ForeignKeyConstraint(["blob_digest"], ["blobs.digest"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("workspace_id", "kind", "glob_name", name="uq_bundle_glob"),
    )
    op.create_index("ix_bundles_blob_digest", "bundles", ["blob_digest"])
    op.create_index("ix_bundles_workspace_id", "bundles", ["workspace_id"])
    op.create_table(
        "train_pipelines",
        *_workspace_ref(),
        *_bundle_ref("source_bundle_id"),
        *_bundle_ref("data_bundle_id"),
        *_bundle_ref("hyper_bundle_id"),
        sa.Column("parallelism", sa.Integer(), nullable=False),
        _json("resources"),
        _when("updated_at", nullable=False),
        sa.PrimaryKeyConstraint("workspace_id"),
    )
    op.create_table(
        "jobs",
        _text("id", 32, nullable=False),
        *_workspace_ref(),
        _text("kind", 32, nullable=False),
        _text("state", 16, nullable=False),
        _text("desired", 8, nullable=False),
        _text("user", USER, nullable=False),
        _when("created_at", nullable=False),
        _when("started_at"),
        _when("finished_at"),
        *_bundle_ref("source_bundle_id"),
        *_bundle_ref("data_bundle_id"),
        *_bundle_ref("hyper_bundle_id"),
        _text("branch", 32),
        _text("image", 1024),
        sa.Column("parallelism", sa.Integer(), nullable=False),
        _json("resources"),
        _text("reason", 1024),
        _json("executor_state"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_jobs_branch", "jobs", ["branch"])
    op.create_index("ix_jobs_listing", "jobs", ["workspace_id", "kind", "created_at", "id"])
    op.create_index("ix_jobs_unfinished", "jobs", ["finished_at"])
    op.create_table(
        "partitions",
        sa.Column("id", sa.Integer(), nullable=False),
        _text("job_id", 32, nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        _text("model_id", 64, nullable=False),
        _json("hyperparams"),
        _text("hyper_file", 1024),
        _text("state", 16, nullable=False),
        _when("started_at"),
        _when("finished_at"),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("has_model", sa.Boolean(), nullable=False),
        _json("metrics"),
        _json("executor_state"),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job_id", "index", name="uq_partition_index"),
        sa.UniqueConstraint("model_id"),
    )
    op.create_index("ix_partitions_job_id", "partitions", ["job_id"])
    op.create_table(
        "endpoints",
        _text("name", 80, nullable=False),
        *_workspace_ref(),
        _text("user", USER, nullable=False),
        *_bundle_ref("source_bundle_id"),
        _text("model_id", 64),
        _text("model_dir", 1024),
        _text("build_job_id", 32),
        _text("state", 24, nullable=False),
        _text("desired", 8, nullable=False),
        _text("image", 1024),
        sa.Column("port", sa.Integer(), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("restarts", sa.Integer(), nullable=False),
        _when("retry_at"),
        _json("resources"),
        _text("reason", 1024),
        _json("executor_state"),
        _when("created_at", nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_index("ix_endpoints_workspace_id", "endpoints", ["workspace_id"])


def downgrade() -> None:
    for table in ("endpoints", "partitions", "jobs", "train_pipelines", "bundles", "workspaces", "blobs"):
        op.drop_table(table)
