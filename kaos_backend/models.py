"""The backend's tables. SQLite and PostgreSQL alike: plain types, `JSON`, foreign keys with ON DELETE rules."""
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# What a bundle row holds; the two data kinds and the three source kinds are zip files.
MAX_USER = 128
BUNDLE_KINDS = ("source-train", "source-serve", "source-notebook", "features", "manifest", "params",
                "data-notebook")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(moment: datetime) -> datetime:
    """A stored moment in UTC with its zone: SQLite hands back naive datetimes of what was stored in UTC."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {
        datetime: DateTime(timezone=True),
        Dict[str, Any]: JSON,
    }


class Workspace(Base):
    __tablename__ = "workspaces"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    user: Mapped[str] = mapped_column(String(MAX_USER))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Blob(Base):
    """A stored upload: `storage.BlobStore` holds the bytes under `digest`."""
    __tablename__ = "blobs"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex
    hash5: Mapped[str] = mapped_column(String(5))                       # kaos_model.ids.hash5_of_digest(sha512)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Bundle(Base):
    """One upload recorded in a workspace: a source, data, manifest or hyperparameter bundle."""
    __tablename__ = "bundles"
    __table_args__ = (UniqueConstraint("workspace_id", "kind", "glob_name", name="uq_bundle_glob"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    glob_name: Mapped[str] = mapped_column(String(300))   # "features:9fd9d", "manifest:1a2b3", "3fbf2", "params.null"
    root_name: Mapped[str] = mapped_column(String(255))   # the bundle's top-level directory ("features", "mnist")
    hash5: Mapped[str] = mapped_column(String(5))
    blob_digest: Mapped[str] = mapped_column(ForeignKey("blobs.digest", ondelete="RESTRICT"), index=True)
    user: Mapped[str] = mapped_column(String(MAX_USER))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    meta: Mapped[Optional[Dict[str, Any]]] = mapped_column(default=None)  # params grid, parallelism, resources


class TrainPipeline(Base):
    """A workspace's one train pipeline: its current inputs (reference §6.5). Changed only by uploads."""
    __tablename__ = "train_pipelines"

    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True)
    source_bundle_id: Mapped[Optional[int]] = mapped_column(ForeignKey("bundles.id", ondelete="SET NULL"))
    data_bundle_id: Mapped[Optional[int]] = mapped_column(ForeignKey("bundles.id", ondelete="SET NULL"))
    hyper_bundle_id: Mapped[Optional[int]] = mapped_column(ForeignKey("bundles.id", ondelete="SET NULL"))
    parallelism: Mapped[int] = mapped_column(Integer, default=1)
    resources: Mapped[Optional[Dict[str, Any]]] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # a deploy of several inputs holds the pipeline until its last one arrives (services/train.py, HOLD_SECONDS)
    held_until: Mapped[Optional[datetime]] = mapped_column(default=None)
    # when an upload last moved it: limits given after a failure or a kill try the combination again, limits given
    # before it ended do not (services/train_retry.py, tried_again)
    deployed_at: Mapped[Optional[datetime]] = mapped_column(default=None)


class Job(Base):
    """One build, ingestion, training or endpoint run. `desired` is what the API asked; `state` what ran."""
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_listing", "workspace_id", "kind", "created_at", "id"),
                      Index("ix_jobs_unfinished", "finished_at"))

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))        # build-train | train | build-serve | serve | ingestion
    state: Mapped[str] = mapped_column(String(16))       # kaos_model.JobState
    desired: Mapped[str] = mapped_column(String(8), default="run")  # run | kill
    user: Mapped[str] = mapped_column(String(MAX_USER))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[Optional[datetime]] = mapped_column(default=None)
    finished_at: Mapped[Optional[datetime]] = mapped_column(default=None)
    source_bundle_id: Mapped[Optional[int]] = mapped_column(ForeignKey("bundles.id", ondelete="SET NULL"))
    data_bundle_id: Mapped[Optional[int]] = mapped_column(ForeignKey("bundles.id", ondelete="SET NULL"))
    hyper_bundle_id: Mapped[Optional[int]] = mapped_column(ForeignKey("bundles.id", ondelete="SET NULL"))
    branch: Mapped[Optional[str]] = mapped_column(String(32), index=True)  # train: <code>_<data>[_<hyper>]
    image: Mapped[Optional[str]] = mapped_column(String(1024))  # build: what it makes; train: what it runs
    parallelism: Mapped[int] = mapped_column(Integer, default=1)
    resources: Mapped[Optional[Dict[str, Any]]] = mapped_column(default=None)
    reason: Mapped[Optional[str]] = mapped_column(String(1024), default=None)
    executor_state: Mapped[Optional[Dict[str, Any]]] = mapped_column(default=None)  # the executor's, opaque


class Partition(Base):
    """One datum of a train job: one hyperparameter combination, one process, one model."""
    __tablename__ = "partitions"
    __table_args__ = (UniqueConstraint("job_id", "index", name="uq_partition_index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    index: Mapped[int] = mapped_column(Integer)
    model_id: Mapped[str] = mapped_column(String(64), unique=True)   # <branch>:<hex6>
    hyperparams: Mapped[Optional[Dict[str, Any]]] = mapped_column(default=None)
    hyper_file: Mapped[Optional[str]] = mapped_column(String(1024), default=None)  # <hash5>/<k=v_...>.json
    state: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[Optional[datetime]] = mapped_column(default=None)
    finished_at: Mapped[Optional[datetime]] = mapped_column(default=None)
    exit_code: Mapped[Optional[int]] = mapped_column(Integer, default=None)
    reason: Mapped[Optional[str]] = mapped_column(String(1024), default=None)  # how it ended, in words
    has_model: Mapped[bool] = mapped_column(default=False)
    metrics: Mapped[Optional[Dict[str, Any]]] = mapped_column(default=None)
    executor_state: Mapped[Optional[Dict[str, Any]]] = mapped_column(default=None)  # the executor's, opaque


class Endpoint(Base):
    """A served model `serve-<ws>-<hex6>`: desired (`desired`) and observed (`state`, a PipelineState)."""
    __tablename__ = "endpoints"

    name: Mapped[str] = mapped_column(String(80), primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    user: Mapped[str] = mapped_column(String(MAX_USER))
    source_bundle_id: Mapped[Optional[int]] = mapped_column(ForeignKey("bundles.id", ondelete="SET NULL"))
    model_id: Mapped[Optional[str]] = mapped_column(String(64), default=None)
    model_dir: Mapped[Optional[str]] = mapped_column(String(1024), default=None)  # the trained model's files
    build_job_id: Mapped[Optional[str]] = mapped_column(String(32), default=None)
    state: Mapped[str] = mapped_column(String(24))
    desired: Mapped[str] = mapped_column(String(8), default="run")  # run | kill
    image: Mapped[Optional[str]] = mapped_column(String(1024), default=None)
    host: Mapped[Optional[str]] = mapped_column(String(255), default=None)  # where it listens (start's Address)
    port: Mapped[Optional[int]] = mapped_column(Integer, default=None)
    socket: Mapped[Optional[str]] = mapped_column(String(108), default=None)  # a unix socket it may listen on too
    failures: Mapped[int] = mapped_column(Integer, default=0)       # exits in a row without reaching running
    restarts: Mapped[int] = mapped_column(Integer, default=0)
    retry_at: Mapped[Optional[datetime]] = mapped_column(default=None)
    started_at: Mapped[Optional[datetime]] = mapped_column(default=None)  # its current start (readiness counts)
    resources: Mapped[Optional[Dict[str, Any]]] = mapped_column(default=None)
    reason: Mapped[Optional[str]] = mapped_column(String(1024), default=None)
    executor_state: Mapped[Optional[Dict[str, Any]]] = mapped_column(default=None)  # the executor's, opaque
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ArtifactToken(Base):
    """A token that lets one workload (a pod, on any node) fetch its inputs and hand back its output over the
    internal routes (`/internal/artifacts/<workload>/...`, services/artifact_tokens.py). The token itself is
    `<selector>.<secret>`: only the secret's sha256 is kept. `spec` is the workload's WorkloadSpec as issued:
    what it may fetch and where its output goes."""
    __tablename__ = "artifact_tokens"

    selector: Mapped[str] = mapped_column(String(32), primary_key=True)   # public half of the token (hex)
    secret_hash: Mapped[str] = mapped_column(String(64))                   # sha256 hex of the secret half
    workload: Mapped[str] = mapped_column(String(80), index=True)          # WorkloadSpec.job_id
    job: Mapped[str] = mapped_column(String(80), index=True)               # the job id, or the endpoint's name
    spec: Mapped[Dict[str, Any]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    revoked_at: Mapped[Optional[datetime]] = mapped_column(default=None)


class Notebook(Base):
    """A JupyterLab `notebook-<ws>-<user>`, one per workspace and user: desired (`desired`) and observed (`state`,
    a PipelineState). The token is kept as its SHA-256 only; its plaintext lives in the notebook's secret file
    (services/notebooks.py) and in the running server. Its work directory outlives the row (kill, cull)."""
    __tablename__ = "notebooks"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    user: Mapped[str] = mapped_column(String(MAX_USER))
    source_bundle_id: Mapped[Optional[int]] = mapped_column(ForeignKey("bundles.id", ondelete="SET NULL"))
    build_job_id: Mapped[Optional[str]] = mapped_column(String(32), default=None)
    data_bundle_ids: Mapped[Optional[List[int]]] = mapped_column(JSON, default=None)  # [bundle id, ...]
    model_id: Mapped[Optional[str]] = mapped_column(String(64), default=None)  # a model attached read-only
    token_sha256: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(24))
    desired: Mapped[str] = mapped_column(String(8), default="run")  # run | kill
    image: Mapped[Optional[str]] = mapped_column(String(1024), default=None)
    host: Mapped[Optional[str]] = mapped_column(String(255), default=None)  # where it listens (start's Address)
    port: Mapped[Optional[int]] = mapped_column(Integer, default=None)
    failures: Mapped[int] = mapped_column(Integer, default=0)       # exits in a row without reaching running
    restarts: Mapped[int] = mapped_column(Integer, default=0)
    retry_at: Mapped[Optional[datetime]] = mapped_column(default=None)
    started_at: Mapped[Optional[datetime]] = mapped_column(default=None)
    resources: Mapped[Optional[Dict[str, Any]]] = mapped_column(default=None)
    reason: Mapped[Optional[str]] = mapped_column(String(1024), default=None)
    executor_state: Mapped[Optional[Dict[str, Any]]] = mapped_column(default=None)  # the executor's, opaque
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
