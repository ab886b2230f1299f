"""Endpoints as the API sees them: deploy (record the desired endpoint), list, logs, bundle, provenance, kill."""
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

from kaos_model import JobState, PipelineState
from kaos_model.ids import ENDPOINT_RE, endpoint_name, new_hex6
from kaos_model.wire import BundleUpload, ServeInfo
from sqlalchemy import select

from kaos_backend.db import Database
from kaos_backend.errors import AlienProvenance, PipelineNotFound
from kaos_backend.executors import log_of
from kaos_backend.executors.base import endpoint_log_name
from kaos_backend.layout import DataLayout
from kaos_backend.models import Bundle, Endpoint, Job, Partition, Workspace
from kaos_backend.services.descriptors import bundle_descriptor, image_name, model_info
from kaos_backend.services.jobs import local_text
from kaos_backend.services.kill_wait import KILL_WAIT_SECONDS, KillPending, wait_for_kill
from kaos_backend.services.paging import Cursor, moment_key, newest_first_page, split_page
from kaos_backend.services.provenance import model_graph, model_parts
from kaos_backend.services.train import find_model, request_build
from kaos_backend.services.uploads import UploadBody, UploadService
from kaos_backend.services.workspaces import find_workspace
from kaos_backend.wakeup import socket_name, wake
from kaos_backend.zipstream import StreamedZip, tree_entries

BUILD_KIND = "build-serve"


def endpoint_dir(data_dir: Path, name: str) -> Path:
    return DataLayout(data_dir).endpoint_dir(name)


def find_endpoint(session, workspace: Optional[str], name: str) -> Endpoint:
    """The endpoint `name` of `workspace` (derived from the name when None); anything else is not found."""
    match = ENDPOINT_RE.match(name or "")
    if workspace is not None:
        workspace_row = find_workspace(session, workspace)
    else:
        workspace_row = session.scalar(select(Workspace).where(Workspace.name == match["workspace"])) \
            if match else None
    endpoint = session.get(Endpoint, name) if match else None
    if endpoint is None or workspace_row is None or endpoint.workspace_id != workspace_row.id \
            or endpoint.desired == "kill":
        raise PipelineNotFound(f"Pipeline {name} not found")
    return endpoint



def endpoint_ended(desired: Optional[str], state: Optional[str]) -> bool:
    """Whether a follow of an endpoint's log ends: its row is gone (`desired` None), it is being killed, or it gave
    up for good (PIPELINE_FAILURE: its build failed, or its starts did; control/endpoints.py restarts it no more)."""
    return desired is None or desired == "kill" or state == PipelineState.PIPELINE_FAILURE.value

class InferenceService:
    def __init__(self, db: Database, uploads: UploadService, config, layout):
        self.db = db
        self.uploads = uploads
        self.config = config
        self.layout = layout

    def deploy(self, workspace: str, model_id: Optional[str], body: UploadBody, user: str = None,
               **resources) -> Dict[str, Any]:
        model_id = None if model_id in (None, "", "None", "none", "null") else model_id
        with self.db.read_scope() as session:  # an unknown model fails before the upload is stored
            workspace_row = find_workspace(session, workspace)
            partition = find_model(session, workspace_row, model_id) if model_id else None
            model_dir = None
            if partition is not None:
                job = session.get(Job, partition.job_id)
                model_dir = str(self.layout.output_dir(job.id, partition.model_id.rsplit(":", 1)[1]) / "model")
        bundle = self.uploads.source("source-serve", workspace, body, user, **resources)
        with self.db.session_scope() as session:
            workspace_row = find_workspace(session, workspace)
            job_id = request_build(session, workspace_row, bundle, user, kind=BUILD_KIND)
            build = job_id or _latest_successful_build(session, bundle.id)
            name = self._unused_name(session, workspace)
            session.add(Endpoint(name=name, workspace_id=workspace_row.id, user=bundle.user,
                                 source_bundle_id=bundle.id, model_id=model_id, model_dir=model_dir,
                                 build_job_id=build, state=PipelineState.PIPELINE_STARTING.value,
                                 resources=(bundle.meta or {}).get("resources")))
        wake(socket_name(self.config.data_dir))
        answer = BundleUpload(glob_name=bundle.glob_name, extra={"endpoint": name, "job_id": job_id}).to_dict()
        return self.uploads.warned(answer, **resources)

    @staticmethod
    def _unused_name(session, workspace: str) -> str:
        while True:
            name = endpoint_name(workspace, new_hex6())
            if session.get(Endpoint, name) is None:
                return name

    def listing(self, workspace: str, host: str) -> List[Dict[str, Any]]:
        """ServeInfo dicts of every endpoint of the workspace, newest first (the 1.x list), with the extras
        `restarts` and `reason`."""
        return self.page(workspace, host)[0]

    def page(self, workspace: str, host: str, limit: Optional[int] = None,
             after: Optional[Cursor] = None) -> Tuple[List[Dict[str, Any]], Optional[Cursor]]:
        """ServeInfo dicts of the workspace's endpoints, newest first (`created_at`, then name): at most `limit`
        (None: all) after the cursor `after` (None: from the newest). Returns the items and the cursor of the
        last one when more follow (else None). Raises WorkspaceNotFound, and BadRequest for a bad cursor."""
        with self.db.read_scope() as session:
            workspace_row = find_workspace(session, workspace)
            query = select(Endpoint).where(Endpoint.workspace_id == workspace_row.id, Endpoint.desired == "run")
            query = newest_first_page(query, Endpoint.created_at, Endpoint.name, limit, after)
            endpoints, next_cursor = split_page(list(session.scalars(query)), limit,
                                                lambda e: (moment_key(e.created_at), e.name))
            bundles = {bundle.id: bundle for bundle in session.scalars(select(Bundle).where(
                Bundle.id.in_([endpoint.source_bundle_id for endpoint in endpoints])))} if endpoints else {}
            model_ids = sorted({endpoint.model_id for endpoint in endpoints if endpoint.model_id})
            trained = {}
            if model_ids:
                models = session.execute(
                    select(Partition.model_id, Job.id, Job.user, Partition.finished_at, Job.finished_at)
                    .join(Job, Job.id == Partition.job_id)
                    .where(Job.workspace_id == workspace_row.id, Partition.model_id.in_(model_ids)))
                trained = {model_id: (job_id, user, local_text(finished or job_finished))
                           for model_id, job_id, user, finished, job_finished in models}
        host = self.config.service_host or host
        return [self._serve_info(workspace, endpoint, bundles.get(endpoint.source_bundle_id),
                                 trained.get(endpoint.model_id), host).to_dict()
                for endpoint in endpoints], next_cursor

    @staticmethod
    def _serve_info(workspace: str, endpoint: Endpoint, source: Optional[Bundle], trained, host: str) -> ServeInfo:
        model = None
        if endpoint.model_id:  # its files are read here, outside any transaction
            job_id, user, created_at = trained or ("", endpoint.user, "")
            model = model_info(endpoint.model_id, user, job_id, created_at or "", endpoint.model_dir)
        return ServeInfo(name=endpoint.name, url=f"{host}/{endpoint.name}/invocations", user=endpoint.user,
                         state=endpoint.state, created_at=local_text(endpoint.created_at),
                         code=bundle_descriptor(workspace, "source-serve", source),
                         image=image_name(workspace, source, BUILD_KIND), model=model,
                         extra={"restarts": endpoint.restarts, "reason": endpoint.reason})

    def log_text(self, workspace: Optional[str], name: str) -> str:
        log = self.log_to_follow(workspace, name)
        return "\n".join(log_of(self.config, log).logs())

    def log_to_follow(self, workspace: Optional[str], name: str) -> str:
        """The name of the endpoint's log, once the endpoint is known (PipelineNotFound otherwise)."""
        with self.db.read_scope() as session:
            find_endpoint(session, workspace, name)
        return endpoint_log_name(name)

    def follow_log(self, workspace: Optional[str], name: str) -> Iterator[str]:
        log = self.log_to_follow(workspace, name)
        return (line + "\n" for line in log_of(self.config, log).logs(follow=True, until=lambda: self._gone(name)))

    def _gone(self, name: str) -> bool:
        with self.db.read_scope() as session:
            endpoint = session.get(Endpoint, name)
            return endpoint_ended(*((endpoint.desired, endpoint.state) if endpoint is not None else (None, None)))

    def kill(self, workspace: Optional[str], name: str, wait: float = KILL_WAIT_SECONDS) -> Optional[KillPending]:
        """Ask the scheduler to remove the endpoint; None once its row (and so its processes) are gone, a
        KillPending when `wait` seconds passed first (the kill stays asked)."""
        with self.db.session_scope() as session:
            find_endpoint(session, workspace, name).desired = "kill"
        wake(socket_name(self.config.data_dir))
        return wait_for_kill(self.db, lambda session: session.get(Endpoint, name) is None,
                             lambda session: getattr(session.get(Endpoint, name), "reason", None), f"endpoint {name}",
                             wait)

    def bundle(self, workspace: str, name: str) -> StreamedZip:
        """The endpoint's code as deployed (`code/<bundle:hash>/…`) with the model's files in its model/,
        as a zip stream (symbolic links left out, as in `train get`)."""
        with self.db.read_scope() as session:
            endpoint = find_endpoint(session, workspace, name)
            bundle = session.get(Bundle, endpoint.source_bundle_id)
            model_dir = endpoint.model_dir
        root = self.layout.extracted(self.uploads.store.path(bundle.blob_digest), bundle.blob_digest,
                                     self.config.max_bundle_bytes) / bundle.root_name
        prefix = f"code/{bundle.glob_name}"
        entries = tree_entries(root, prefix)
        if model_dir:
            entries += tree_entries(Path(model_dir), f"{prefix}/model")
        return StreamedZip(entries)

    def provenance(self, workspace: str, name: str, host: str) -> str:
        with self.db.read_scope() as session:
            endpoint = find_endpoint(session, workspace, name)
            if not endpoint.model_id:
                raise AlienProvenance("Unable to determine provenance with external model")
            workspace_row = find_workspace(session, workspace)
            partition = find_model(session, workspace_row, endpoint.model_id)
            job = session.get(Job, partition.job_id)
            parts = model_parts(session, job)
            serve = session.get(Bundle, endpoint.source_bundle_id) if endpoint.source_bundle_id else None
            if serve is not None:
                parts["serve"] = serve
            return provenance_dot(workspace, endpoint, job, partition, parts,
                                  f"{self.config.service_host or host}/{name}/invocations")


def _latest_successful_build(session, bundle_id: int) -> Optional[str]:
    return session.scalar(select(Job.id).where(Job.kind == BUILD_KIND, Job.source_bundle_id == bundle_id,
                                               Job.state == JobState.JOB_SUCCESS.value)
                          .order_by(Job.created_at.desc()).limit(1))


def provenance_dot(workspace: str, endpoint: Endpoint, job: Job, partition: Partition, parts: Dict[str, Bundle],
                   url: str) -> str:
    """The original's endpoint provenance graph (§6.9): the model's graph (`services.train.model_graph`, also
    `kaos train provenance`'s) continued by the serve part: model + serve code → build-serve → image → endpoint."""
    ws = workspace
    graph = model_graph(workspace, job, partition, parts)
    graph.repo(f"source-serve-{ws}", f"build-serve-{ws}:repo")
    graph.pipeline(f"build-serve-{ws}", endpoint.name)
    graph.edge(f"train-{ws}:repo", f"build-serve-{ws}", f"model {partition.model_id}")
    serve = parts.get("serve")
    graph.edge(f"source-serve-{ws}", f"build-serve-{ws}", f"/{serve.glob_name}" if serve else "")
    graph.edge(f"build-serve-{ws}", f"build-serve-{ws}:repo")
    graph.edge(f"build-serve-{ws}:repo", endpoint.name, f"build-serve-{ws}:{serve.hash5}" if serve else "")
    graph.box("endpoint", "red")
    graph.edge(endpoint.name, "endpoint", url)
    return graph.source([url, "Served model with kaos", f"user: {endpoint.user}",
                         f"created_at: {local_text(endpoint.created_at)}"])
