"""The backend's tables. SQLite and PostgreSQL alike: plain types, `JSON`, foreign keys with ON DELETE rules."""
from datetime import datetime, timezone
from typing import Any, Dict, Optional

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# What a bundle row holds; the two data kinds and the three source kinds are zip files.
MAX_USER = 128
BUNDLE_KINDS = ("source-train", "source-serve", "source-notebook", "features", "manifest", "params",
                "data-notebook")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


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
