"""Workspaces: exact names only (the original matched substrings, so killing `a` also killed `ab`)."""
from typing import List, Optional

from kaos_model.ids import clean_user, workspace_name_problem
from kaos_model.wire import WorkspaceInfo
from sqlalchemy import delete, exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kaos_backend.db import Database
from kaos_backend.errors import InvalidWorkspaceName, WorkspaceExists, WorkspaceNotFound
from kaos_backend.models import MAX_USER, Blob, Bundle, Workspace
from kaos_backend.services.blobs import delete_unreferenced_rows
from kaos_backend.storage import BlobStore

# The original's per-workspace Pachyderm repos and build pipelines, kept as names (reference §6.1).
REPO_PREFIXES = ("source-train", "build-train", "ingestion", "train", "hyper", "data-manifest", "source-serve",
                 "source-notebook", "build-notebook", "data-notebook")
BUILD_PIPELINE_PREFIXES = ("build-train", "build-serve", "build-notebook")
# Until the train pipeline has its own rows, it "exists" once the workspace holds one of its inputs.
TRAIN_INPUT_KINDS = ("source-train", "features", "manifest", "params")


def find_workspace(session: Session, name: str) -> Workspace:
    workspace = session.scalar(select(Workspace).where(Workspace.name == name)) if name else None
    if workspace is None:
        raise WorkspaceNotFound.named(name)
    return workspace


class WorkspaceService:
    def __init__(self, db: Database, store: BlobStore):
        self.db = db
        self.store = store

    def create(self, name: str, user: Optional[str] = None) -> WorkspaceInfo:
        problem = workspace_name_problem(name)
        if problem:
            raise InvalidWorkspaceName(problem)
        try:
            with self.db.session_scope() as session:
                if session.scalar(select(exists().where(Workspace.name == name))):
                    raise WorkspaceExists.named(name)
                session.add(Workspace(name=name, user=clean_user(user)[:MAX_USER]))
        except IntegrityError:  # a concurrent create of the same name won the race
            raise WorkspaceExists.named(name) from None
        return self.info(name)

    def names(self) -> List[str]:
        with self.db.session_scope() as session:
            return list(session.scalars(select(Workspace.name).order_by(Workspace.name)))

    def info(self, name: str) -> WorkspaceInfo:
        with self.db.session_scope() as session:
            workspace = find_workspace(session, name)
            kinds = set(session.scalars(select(Bundle.kind).where(Bundle.workspace_id == workspace.id)))
        pipelines = [f"{prefix}-{name}" for prefix in BUILD_PIPELINE_PREFIXES]
        if kinds & set(TRAIN_INPUT_KINDS):
            pipelines.append(f"train-{name}")
        return WorkspaceInfo(name=name, pipelines=pipelines, repos=[f"{prefix}-{name}" for prefix in REPO_PREFIXES])

    def delete(self, name: str) -> None:
        """Delete exactly this workspace's rows in one transaction, then the blobs nobody references any more."""
        with self.store.lock(exclusive=True):
            with self.db.session_scope() as session:
                workspace = find_workspace(session, name)
                digests = set(session.scalars(select(Bundle.blob_digest).where(Bundle.workspace_id == workspace.id)))
                session.execute(delete(Bundle).where(Bundle.workspace_id == workspace.id))
                session.execute(delete(Workspace).where(Workspace.id == workspace.id))
                orphans = delete_unreferenced_rows(session, digests)
            for digest in orphans:
                self.store.delete(digest)

    def delete_all(self) -> None:
        """Every workspace, bundle and blob: the original's `DELETE /internal/resources`."""
        with self.store.lock(exclusive=True):
            with self.db.session_scope() as session:
                session.execute(delete(Bundle))
                session.execute(delete(Workspace))
                session.execute(delete(Blob))
            self.store.wipe()
