"""Workspaces: exact names only (the original matched substrings, so killing `a` also killed `ab`)."""
import contextlib
import logging
import time
from typing import Iterable, List, Optional, Set, Tuple

from kaos_model.ids import clean_user, workspace_name_problem
from kaos_model.wire import WorkspaceInfo
from sqlalchemy import delete, exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kaos_backend.db import Database
from kaos_backend.errors import (BadRequest, InvalidWorkspaceName, PlatformUnhealthy, WorkspaceExists,
                                 WorkspaceNotFound)
from kaos_backend.models import MAX_USER, Blob, Bundle, Endpoint, Job, Notebook, Partition, TrainPipeline, Workspace
from kaos_backend.services.blobs import delete_unreferenced_rows, remove_blob_files
from kaos_backend.services.paging import Cursor, split_page
from kaos_backend.storage import BlobStore
from kaos_backend.wakeup import socket_name, wake

log = logging.getLogger("kaos_backend.services.workspaces")

# The original's per-workspace Pachyderm repos and build pipelines, kept as names (reference §6.1).
REPO_PREFIXES = ("source-train", "build-train", "ingestion", "train", "hyper", "data-manifest", "source-serve",
                 "source-notebook", "build-notebook", "data-notebook")
BUILD_PIPELINE_PREFIXES = ("build-train", "build-serve", "build-notebook")
# Until the train pipeline has its own rows, it "exists" once the workspace holds one of its inputs.
TRAIN_INPUT_KINDS = ("source-train", "features", "manifest", "params")
STOP_WAIT_SECONDS = 50.0  # how long a kill waits for the scheduler to stop the workloads (the CLI waits 60 s)
STOP_POLL_SECONDS = 0.1


def find_workspace(session: Session, name: str, lock: bool = False) -> Workspace:
    """The workspace named `name`; with `lock`, its row locked for update until the transaction ends (on
    PostgreSQL: the scheduler then schedules no training in it meanwhile). Raises WorkspaceNotFound."""
    query = select(Workspace).where(Workspace.name == name)
    workspace = session.scalar(query.with_for_update() if lock else query) if name else None
    if workspace is None:
        raise WorkspaceNotFound.named(name)
    return workspace


class WorkspaceService:
    def __init__(self, db: Database, store: BlobStore, config=None, layout=None,
                 stop_wait: float = STOP_WAIT_SECONDS):
        self.db = db
        self.store = store
        self.config = config
        self.layout = layout
        self.stop_wait = stop_wait

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
        """Every workspace name, sorted (the 1.x list)."""
        return self.names_page()[0]

    def names_page(self, limit: Optional[int] = None,
                   after: Optional[Cursor] = None) -> Tuple[List[str], Optional[Cursor]]:
        """Workspace names in name order (the 1.x order; the name is unique and indexed, and is the keyset as in
        a Kubernetes list): at most `limit` (None: all) after the cursor `(name,)` (None: from the first).
        Returns the names and the cursor of the last one when more follow (else None)."""
        with self.db.read_scope() as session:
            query = select(Workspace.name).order_by(Workspace.name)
            if after is not None:
                if len(after) != 1:
                    raise BadRequest("Query parameter continue is not a token of this list: its cursor has the "
                                     "wrong shape")
                query = query.where(Workspace.name > after[0])
            if limit is not None:
                query = query.limit(limit + 1)
            return split_page(list(session.scalars(query)), limit, lambda name: (name,))

    def info(self, name: str) -> WorkspaceInfo:
        with self.db.read_scope() as session:
            workspace = find_workspace(session, name)
            kinds = set(session.scalars(select(Bundle.kind).where(Bundle.workspace_id == workspace.id)))
        pipelines = [f"{prefix}-{name}" for prefix in BUILD_PIPELINE_PREFIXES]
        if kinds & set(TRAIN_INPUT_KINDS):  # the train pipeline exists once it has an input
            pipelines.append(f"train-{name}")
        return WorkspaceInfo(name=name, pipelines=pipelines, repos=[f"{prefix}-{name}" for prefix in REPO_PREFIXES])

    def delete(self, name: str) -> None:
        """Delete exactly this workspace's rows in one transaction, then the files that only it used: the blobs
        no bundle references any more with the bundles extracted from them and a manifest's ingested files,
        the virtualenvs no remaining job or endpoint runs, and its jobs' and endpoints' directories.

        Its workloads are the scheduler's to stop: the request records `desired="kill"` on its jobs and
        endpoints, wakes the scheduler, and waits (up to `stop_wait` seconds: PlatformUnhealthy then, and the
        workspace stays) until none runs; the rows go in a transaction that finds none running. Files are
        removed in the request: each item is renamed into a trash batch under the lock that guards it (never
        waiting for a build or an extraction that holds one: that item is left), and the batch is deleted once
        every lock is released."""
        deadline = time.monotonic() + self.stop_wait
        while True:
            with self.db.read_scope() as session:
                workspace_id = find_workspace(session, name).id
                notebooks = set(session.scalars(select(Notebook.name).where(Notebook.workspace_id == workspace_id)))
            self._await_stopped([workspace_id], deadline, f"workspace {name}")  # a killed notebook's row goes
            with self._trash() as trash:
                with self.store.lock(exclusive=True):
                    with self.db.session_scope() as session:
                        workspace = find_workspace(session, name, lock=True)
                        if _live_workloads(session, [workspace.id], lock=True):
                            continue  # one started meanwhile (a training of its pipeline): it is stopped too
                        job_ids = list(session.scalars(select(Job.id).where(Job.workspace_id == workspace.id)))
                        endpoints = list(session.scalars(select(Endpoint.name).where(
                            Endpoint.workspace_id == workspace.id)))
                        notebooks |= set(session.scalars(select(Notebook.name).where(
                            Notebook.workspace_id == workspace.id)))
                        digests = set(session.scalars(select(Bundle.blob_digest).where(
                            Bundle.workspace_id == workspace.id)))
                        images = self._images(session, [workspace.id])
                        session.execute(delete(Partition).where(Partition.job_id.in_(job_ids)))
                        session.execute(delete(Job).where(Job.workspace_id == workspace.id))
                        session.execute(delete(Endpoint).where(Endpoint.workspace_id == workspace.id))
                        session.execute(delete(Notebook).where(Notebook.workspace_id == workspace.id))
                        session.execute(delete(TrainPipeline).where(TrainPipeline.workspace_id == workspace.id))
                        session.execute(delete(Bundle).where(Bundle.workspace_id == workspace.id))
                        session.execute(delete(Workspace).where(Workspace.id == workspace.id))
                        orphans = delete_unreferenced_rows(session, digests)
                    _left_in_place("extracted bundle", remove_blob_files(self.store, self.layout, orphans, trash))
                self._remove_unused_images(images, trash)
                self._remove_job_files(job_ids, endpoints, notebooks)
                self._remove_notebook_work(name)
            return

    def _await_stopped(self, workspace_ids, deadline: float, what: str) -> None:
        """Record `desired="kill"` on every unfinished job and every endpoint of these workspaces (the scheduler
        then starts nothing more there and stops what runs), wake the scheduler, and wait until no workload of
        theirs runs. PlatformUnhealthy when some still runs at `deadline` (time.monotonic())."""
        with self.db.session_scope() as session:
            for model in (Job, Endpoint, Notebook):
                for row in session.scalars(select(model).where(model.workspace_id.in_(workspace_ids))):
                    if getattr(row, "finished_at", None) is None:
                        row.desired = "kill"
        if self.config is not None:
            wake(socket_name(self.config.data_dir))
        while True:
            with self.db.read_scope() as session:
                running = _live_workloads(session, workspace_ids)
            if not running:
                return
            if time.monotonic() >= deadline:
                raise PlatformUnhealthy(
                    f"The kaos backend's scheduler did not stop the workloads of {what} within {self.stop_wait:g}s "
                    f"(still running: {', '.join(running[:5])}{' ...' if len(running) > 5 else ''}): is it "
                    "running? Nothing was deleted: kill it again once the scheduler is up",
                    part="scheduler")
            time.sleep(STOP_POLL_SECONDS)

    @staticmethod
    def _images(session, workspace_ids) -> Set[str]:
        """The images (local: virtualenv directories) the jobs and endpoints of these workspaces made or ran."""
        images = set(session.scalars(select(Job.image).where(Job.workspace_id.in_(workspace_ids))))
        images |= set(session.scalars(select(Endpoint.image).where(Endpoint.workspace_id.in_(workspace_ids))))
        images |= set(session.scalars(select(Notebook.image).where(Notebook.workspace_id.in_(workspace_ids))))
        return {image for image in images if image}

    def _remove_unused_images(self, images: Iterable[str], trash) -> None:
        """Remove the local images among `images` that no remaining job or endpoint made or runs. A build of the
        same requirements may be running (it holds the environment's lock: left alone) or may be about to
        record the environment as ready: the check and the move happen in one transaction, which on SQLite
        holds the write lock, so such a record commits before (and keeps the environment) or after (and finds
        it gone, and builds it again). On PostgreSQL the two transactions are not serialised: a warm build
        recorded in the instant between the check and the move would point at a removed environment."""
        if self.layout is None:
            return
        busy = []
        for image in sorted(images):
            key = self.layout.env_key(image)
            if key is None:
                continue
            with self.layout.env_lock(key) as lock:
                if lock is None:
                    busy.append(key)
                    continue
                with self.db.session_scope() as session:
                    if not _image_in_use(session, image):
                        self.layout.remove_env(key, lock, trash)
        _left_in_place("environment", busy)

    def _remove_job_files(self, job_ids, endpoint_names=(), notebook_names=()) -> None:
        if self.layout is not None:
            for job_id in job_ids:
                self.layout.remove_job(job_id)
            for name in endpoint_names:
                self.layout.remove_endpoint(name)
            for name in notebook_names:
                self.layout.remove_notebook(name)

    def _remove_notebook_work(self, workspace: Optional[str]) -> None:
        """The kept work directories of the workspace's notebooks (every workspace's when None), killed or not:
        under the data directory, and those its executor keeps elsewhere (a cluster's claims)."""
        if self.layout is not None:
            self.layout.remove_notebook_work(workspace)
        if self.config is not None:
            from kaos_backend.executors.registry import executor_class
            try:
                if not executor_class(self.config.executor).remove_notebook_work(self.config, workspace):
                    log.warning("Notebook work directories of %s stay", workspace or "every workspace")
            except Exception:  # noqa: BLE001 - the workspace is gone already: what stays is logged
                log.exception("Notebook work directories of %s stay", workspace or "every workspace")

    def _trash(self):
        return self.layout.trash() if self.layout is not None else contextlib.nullcontext()

    def delete_all(self) -> None:
        """Every workspace, bundle and blob, and every file made from them: the original's
        `DELETE /internal/resources`. Workloads are stopped by the scheduler, as for `delete`."""
        deadline = time.monotonic() + self.stop_wait
        while True:
            with self.db.read_scope() as session:
                workspace_ids = list(session.scalars(select(Workspace.id)))
                notebooks = set(session.scalars(select(Notebook.name)))
            self._await_stopped(workspace_ids, deadline, "every workspace")
            with self._trash() as trash:
                with self.store.lock(exclusive=True):
                    with self.db.session_scope() as session:
                        locked = select(Workspace.id).with_for_update()  # as in delete: no training scheduled
                        if _live_workloads(session, list(session.scalars(locked)), lock=True):
                            continue  # one started meanwhile: it is stopped too
                        job_ids = list(session.scalars(select(Job.id)))
                        endpoints = list(session.scalars(select(Endpoint.name)))
                        notebooks |= set(session.scalars(select(Notebook.name)))
                        session.execute(delete(Partition))
                        session.execute(delete(Job))
                        session.execute(delete(Endpoint))
                        session.execute(delete(Notebook))
                        session.execute(delete(TrainPipeline))
                        session.execute(delete(Bundle))
                        session.execute(delete(Workspace))
                        session.execute(delete(Blob))
                    self.store.wipe()
                    if self.layout is not None:
                        for digest in self.layout.ingested_digests():
                            self.layout.remove_ingested(digest, trash)
                        _left_in_place("extracted bundle", [digest for digest in self.layout.extracted_digests()
                                                            if not self.layout.remove_extracted(digest, trash)])
                if self.layout is not None:
                    self._remove_unused_images([str(self.layout.envs_dir / key) for key in self.layout.env_keys()],
                                               trash)
                self._remove_job_files(job_ids, endpoints, notebooks)
                self._remove_notebook_work(None)
            return


def _live_workloads(session: Session, workspace_ids, lock: bool = False) -> List[str]:
    """The workloads started and not yet stopped in these workspaces ("job <id>", "partition <job id>#<index>",
    "endpoint <name>"): unfinished jobs and partitions, and endpoints, whose executor state is recorded.

    With `lock`, every unfinished job and partition and every endpoint of theirs is locked for this transaction
    (SELECT ... FOR UPDATE on PostgreSQL; a SQLite write transaction holds the whole database), so the scheduler
    cannot record a start on one of them before the transaction ends: it then finds the row gone and stops what
    it started."""
    def rows(query):
        return session.execute(query.with_for_update() if lock else query).all()

    jobs = rows(select(Job.id, Job.executor_state).where(Job.workspace_id.in_(workspace_ids),
                                                         Job.finished_at.is_(None)))
    partitions = rows(select(Partition.job_id, Partition.index, Partition.executor_state).where(
        Partition.job_id.in_([job.id for job in jobs]), Partition.finished_at.is_(None))) if jobs else []
    endpoints = rows(select(Endpoint.name, Endpoint.executor_state).where(Endpoint.workspace_id.in_(workspace_ids)))
    notebooks = rows(select(Notebook.name, Notebook.executor_state).where(Notebook.workspace_id.in_(workspace_ids)))
    return ([f"job {job.id}" for job in jobs if job.executor_state]
            + [f"partition {row.job_id}#{row.index}" for row in partitions if row.executor_state]
            + [f"endpoint {row.name}" for row in endpoints if row.executor_state]
            + [f"notebook {row.name}" for row in notebooks if row.executor_state])


def _image_in_use(session: Session, image: str) -> bool:
    return bool(session.scalar(select(exists().where(Job.image == image)))
                or session.scalar(select(exists().where(Endpoint.image == image)))
                or session.scalar(select(exists().where(Notebook.image == image))))


def _left_in_place(what: str, names: List[str]) -> None:
    for name in names:
        log.warning("Unused %s %s is being built or extracted right now: left in place", what, name)
