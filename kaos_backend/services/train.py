"""The workspace train pipeline's rules (reference §6.5, fixed per §11.6): uploads set its inputs at once,
what a train job looks like to `kaos train info`, its bundle for `kaos train get` and a model's provenance for
`kaos train provenance` (graphs: services/provenance.py)."""
import contextlib
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional

from kaos_model import JobState
from kaos_model.ids import new_job_id
from kaos_model.wire import NO_BRANCH, NO_DATA, NO_HYPERPARAMS, NO_IMAGE, BundleUpload, TrainPipelineInfo
from sqlalchemy import select

from kaos_backend.db import Database
from kaos_backend.errors import BadRequest, ModelNotFound, NotFound
from kaos_backend.layout import DataLayout
from kaos_backend.models import Bundle, Job, Partition, TrainPipeline, Workspace, as_utc
from kaos_backend.services.jobs import TERMINAL, find_job
from kaos_backend.services.provenance import model_file_path, model_parts, model_provenance_dot
from kaos_backend.services.train_info import job_info
from kaos_backend.services.train_retry import standing_job
from kaos_backend.services.uploads import PARAMS_NULL, UploadBody, UploadService
from kaos_backend.services.workspaces import find_workspace
from kaos_backend.wakeup import socket_name, wake
from kaos_backend.zipstream import StreamedZip, ZipEntry, tree_entries

BUILD_KIND = "build-train"
INGESTION_KIND = "ingestion"
PIPELINE_ARGS = "pipeline_args.json"  # the original's build arguments file, left out of `train get`'s code/


HOLD_SECONDS = 600  # how long a deploy's pipeline waits for its next input, from the latest upload's start or end


def held(pipeline: Optional[TrainPipeline]) -> bool:
    """Whether a deploy of several inputs holds `pipeline` (no training is scheduled for it) now."""
    if pipeline is None or pipeline.held_until is None:
        return False
    return as_utc(pipeline.held_until) > datetime.now(timezone.utc)


def _hold_end(inputs_follow: bool) -> Optional[datetime]:
    return datetime.now(timezone.utc) + timedelta(seconds=HOLD_SECONDS) if inputs_follow else None


def pipeline_of(session, workspace: Workspace) -> TrainPipeline:
    pipeline = session.get(TrainPipeline, workspace.id)
    if pipeline is None:
        pipeline = TrainPipeline(workspace_id=workspace.id, parallelism=1)
        session.add(pipeline)
    return pipeline


def moved_pipeline(session, workspace: Workspace, inputs_follow: bool) -> TrainPipeline:
    """The workspace's pipeline as an upload moves it: deployed now, held when more of the deploy's inputs follow."""
    pipeline = pipeline_of(session, workspace)
    pipeline.held_until = _hold_end(inputs_follow)
    pipeline.deployed_at = datetime.now(timezone.utc)
    return pipeline


def latest_build(session, bundle_id: int, kind: str = BUILD_KIND) -> Optional[Job]:
    return session.scalar(select(Job).where(Job.kind == kind, Job.source_bundle_id == bundle_id)
                          .order_by(Job.created_at.desc()).limit(1))


def image_state(build: Optional[Job]) -> str:
    if build is None:
        return "none"
    if build.state == JobState.JOB_SUCCESS.value:
        return "ready"
    if build.state in (JobState.JOB_FAILURE.value, JobState.JOB_KILLED.value):
        return "failed"
    return "building"


def output_branch(source: Bundle, data: Bundle, hyper: Optional[Bundle]) -> str:
    return "_".join(part.hash5 for part in (source, data, hyper) if part is not None)


def request_build(session, workspace: Workspace, bundle: Bundle, user: str, kind: str = BUILD_KIND) -> Optional[str]:
    """Make sure the bundle's image exists or is being built; the build job's id, or None when it is built."""
    build = latest_build(session, bundle.id, kind)
    if build is not None and build.state == JobState.JOB_SUCCESS.value:
        return None
    if build is not None and build.state not in (JobState.JOB_FAILURE.value, JobState.JOB_KILLED.value) \
            and build.desired != "kill":  # a build being cancelled (its endpoint killed) is not waited for
        return build.id
    build = Job(id=new_job_id(), workspace_id=workspace.id, kind=kind, state=JobState.JOB_STARTING.value,
                user=bundle.user, source_bundle_id=bundle.id, resources=(bundle.meta or {}).get("resources"))
    session.add(build)
    return build.id


def latest_ingestion(session, manifest_bundle_id: int) -> Optional[Job]:
    """The newest ingestion job of a manifest bundle (its `data_bundle_id`), if any."""
    return session.scalar(select(Job).where(Job.kind == INGESTION_KIND, Job.data_bundle_id == manifest_bundle_id)
                          .order_by(Job.created_at.desc()).limit(1))


def request_ingestion(session, workspace: Workspace, bundle: Bundle, user: Optional[str] = None) -> Optional[str]:
    """Make sure the manifest bundle's files are ingested or being ingested: one ingestion per manifest bundle,
    a new one only when the last failed or was killed. The running job's id, or None once ingested."""
    job = latest_ingestion(session, bundle.id)
    if job is not None and job.state == JobState.JOB_SUCCESS.value:
        return None
    if job is not None and job.state not in (JobState.JOB_FAILURE.value, JobState.JOB_KILLED.value):
        return job.id
    job = Job(id=new_job_id(), workspace_id=workspace.id, kind=INGESTION_KIND, state=JobState.JOB_STARTING.value,
              user=user or bundle.user, data_bundle_id=bundle.id, resources=(bundle.meta or {}).get("resources"))
    session.add(job)
    return job.id


def find_model(session, workspace: Workspace, model_id: str) -> Partition:
    """The successful partition of the workspace whose model is `model_id` (`<branch>:<hex6>`)."""
    partition = session.scalar(
        select(Partition).join(Job, Job.id == Partition.job_id)
        .where(Job.workspace_id == workspace.id, Partition.model_id == model_id,
               Partition.state == JobState.JOB_SUCCESS.value, Partition.has_model.is_(True)))
    if partition is None:
        raise ModelNotFound(f"There is no model with id: {model_id}")
    return partition


def hex6_of(model_id: str) -> str:
    return model_id.rsplit(":", 1)[1]


def safe_hyper_file(hyper_file: str) -> str:
    """`<hash5>/<combination>.json` as one zip member below `<hash5>/`: a hyperparameter value may hold `/`
    (e.g. `"../x"`), which must not become a directory (or climb out of the bundle) when extracted."""
    directory, _, name = hyper_file.partition("/")
    return f"{directory}/{name.replace('/', '_').replace(chr(92), '_')}"


class TrainService:
    def __init__(self, db: Database, uploads: UploadService, layout: Optional[DataLayout] = None):
        self.db = db
        self.uploads = uploads
        self.layout = layout or DataLayout(uploads.config.data_dir)

    # -- inputs ---------------------------------------------------------------------------------------------
    # A deploy of several inputs (`kaos train deploy -s -d -h`) uploads them one by one, and each moves the
    # pipeline: every upload but its last says `inputs_follow`, which holds the pipeline (no training is scheduled)
    # until the last one arrives, at most HOLD_SECONDS after the latest upload of the deploy began or ended (a CLI
    # that died mid-deploy). An upload that fails ends the hold (the inputs that arrived stay, as any upload's).
    # Clients that never say it (kaos 1.x's) see no hold.
    def submit_source(self, workspace: str, body: UploadBody, user: str = None, inputs_follow: bool = False,
                      **resources) -> Dict[str, Any]:
        with self._holding(workspace, inputs_follow):
            return self._submit_source(workspace, body, user, inputs_follow, **resources)

    def _submit_source(self, workspace: str, body: UploadBody, user, inputs_follow: bool,
                       **resources) -> Dict[str, Any]:
        bundle = self.uploads.source("source-train", workspace, body, user, **resources)
        with self.db.session_scope() as session:
            workspace_row = find_workspace(session, workspace)
            pipeline = moved_pipeline(session, workspace_row, inputs_follow)
            pipeline.source_bundle_id = bundle.id
            pipeline.hyper_bundle_id = None  # the original's rule, now applied at upload time, not by a callback
            pipeline.resources = (bundle.meta or {}).get("resources")
            job_id = request_build(session, workspace_row, bundle, user)
        wake(socket_name(self.uploads.config.data_dir))
        answer = BundleUpload(glob_name=bundle.glob_name, extra={"job_id": job_id}).to_dict()
        return self.uploads.warned(answer, **resources)

    def submit_features(self, workspace: str, body: UploadBody, user: str = None, inputs_follow: bool = False,
                        **resources) -> Dict[str, Any]:
        with self._holding(workspace, inputs_follow):
            result = self.uploads.features(workspace, body, user, **resources)
            self._set_data(workspace, result["glob_name"], "features", inputs_follow)
        return self.uploads.warned(result, **resources)

    def submit_manifest(self, workspace: str, body: UploadBody, user: str = None, inputs_follow: bool = False,
                        **resources) -> Dict[str, Any]:
        """A data manifest becomes the pipeline's data, as a data bundle does; its files are downloaded by an
        ingestion job (unless this manifest was ingested already), and trainings on it wait for that."""
        with self._holding(workspace, inputs_follow):
            result = self.uploads.manifest(workspace, body, user, **resources)
            self._set_data(workspace, result["glob_name"], "manifest", inputs_follow)
        return self.uploads.warned(result, **resources)

    def _set_data(self, workspace: str, glob_name: str, kind: str, inputs_follow: bool) -> None:
        with self.db.session_scope() as session:
            workspace_row = find_workspace(session, workspace)
            bundle = session.scalar(select(Bundle).where(Bundle.workspace_id == workspace_row.id,
                                                         Bundle.kind == kind, Bundle.glob_name == glob_name))
            pipeline = moved_pipeline(session, workspace_row, inputs_follow)
            pipeline.data_bundle_id = bundle.id
            pipeline.hyper_bundle_id = None
            if (bundle.meta or {}).get("resources"):
                pipeline.resources = bundle.meta["resources"]
            if kind == "manifest":
                request_ingestion(session, workspace_row, bundle)
        wake(socket_name(self.uploads.config.data_dir))

    def submit_params(self, workspace: str, body: UploadBody, user: str = None, parallelism: Any = None,
                      inputs_follow: bool = False, **resources) -> Dict[str, Any]:
        with self._holding(workspace, inputs_follow):
            return self._submit_params(workspace, body, user, parallelism, inputs_follow, **resources)

    def _submit_params(self, workspace: str, body: UploadBody, user, parallelism: Any, inputs_follow: bool,
                       **resources) -> Dict[str, Any]:
        result = self.uploads.params(workspace, body, user, parallelism, **resources)
        with self.db.session_scope() as session:
            workspace_row = find_workspace(session, workspace)
            bundle = session.scalar(select(Bundle).where(Bundle.workspace_id == workspace_row.id,
                                                         Bundle.kind == "params",
                                                         Bundle.glob_name == result["glob_name"]))
            pipeline = moved_pipeline(session, workspace_row, inputs_follow)
            pipeline.hyper_bundle_id = None if bundle.glob_name == PARAMS_NULL else bundle.id
            pipeline.parallelism = (bundle.meta or {}).get("parallelism") or 1
            pipeline.resources = (bundle.meta or {}).get("resources")  # the deploy's limits, as each upload's
        wake(socket_name(self.uploads.config.data_dir))
        return self.uploads.warned(result, **resources)

    @contextlib.contextmanager
    def _holding(self, workspace: str, inputs_follow: bool):
        """Around one upload: the pipeline held from the upload's start when more inputs follow, or when it is held
        already (the deploy's last upload: a long one must not outlive the hold); the hold ended if it fails."""
        self._hold(workspace, running_only=not inputs_follow)
        try:
            yield
        except BaseException:
            self._release(workspace)
            raise

    def _hold(self, workspace: str, running_only: bool) -> None:
        with self.db.session_scope() as session:
            workspace_row = session.scalar(select(Workspace).where(Workspace.name == workspace))
            if workspace_row is None:
                return  # the upload itself answers WorkspaceNotFound
            pipeline = session.get(TrainPipeline, workspace_row.id)
            if running_only and not held(pipeline):
                return
            (pipeline or pipeline_of(session, workspace_row)).held_until = _hold_end(True)

    def _release(self, workspace: str) -> None:
        with self.db.session_scope() as session:
            workspace_row = session.scalar(select(Workspace).where(Workspace.name == workspace))
            pipeline = session.get(TrainPipeline, workspace_row.id) if workspace_row is not None else None
            if pipeline is not None and pipeline.held_until is not None:
                pipeline.held_until = None
        wake(socket_name(self.uploads.config.data_dir))

    # -- views ----------------------------------------------------------------------------------------------
    def inspect(self, workspace: str) -> Dict[str, Any]:
        """The train pipeline as 1.x's flat definition (TrainPipelineInfo): inputs not set yet are 1.x's null
        names (`image:null`, `/data:null`, `/params.null`); extras `image_state` (none, building, ready,
        failed), `source_glob` (the current source bundle, null without one) and `trained` (`{"job_id", "state"}`:
        the train job of these inputs that stands, so that they start nothing new; null when they will train)."""
        with self.db.read_scope() as session:
            workspace_row = find_workspace(session, workspace)
            pipeline = session.get(TrainPipeline, workspace_row.id) or TrainPipeline(parallelism=1)
            source = session.get(Bundle, pipeline.source_bundle_id) if pipeline.source_bundle_id else None
            data = session.get(Bundle, pipeline.data_bundle_id) if pipeline.data_bundle_id else None
            hyper = session.get(Bundle, pipeline.hyper_bundle_id) if pipeline.hyper_bundle_id else None
            state = image_state(latest_build(session, source.id)) if source else "none"
            trained = standing_job(session, pipeline, output_branch(source, data, hyper)) if source and data else None
            if trained is not None and pipeline.deployed_at is not None \
                    and as_utc(trained.created_at) >= as_utc(pipeline.deployed_at):
                trained = None  # the job the last deploy started: these inputs did train
            resources = pipeline.resources or {}
            image = f"{BUILD_KIND}-{workspace}:{source.hash5}" if source else NO_IMAGE
            info = TrainPipelineInfo(
                image=image, commands=["./train $KAOS_TRAIN_OUTPUT"],
                description=json.dumps({"user": workspace_row.user, "workspace": workspace}),
                parallelism=pipeline.parallelism or 1,
                output_branch=output_branch(source, data, hyper) if source and data else NO_BRANCH,
                cpu=resources.get("cpu") or 0.0, memory=resources.get("memory") or "", gpu=resources.get("gpu") or 0,
                data_name="data", data_repo=f"{INGESTION_KIND}-{workspace}", data_branch="master",
                data_glob=f"/{data.glob_name}" if data else f"/{NO_DATA}",
                image_name=BUILD_KIND, image_repo=f"{BUILD_KIND}-{workspace}", image_branch="master",
                image_glob=f"/{image}",
                hyper_name="hyper", hyper_repo=f"hyper-{workspace}", hyper_branch="master",
                hyper_glob=f"/{hyper.glob_name}/*" if hyper else f"/{NO_HYPERPARAMS}",
                extra={"image_state": state, "source_glob": f"/{source.glob_name}" if source else None,
                       "trained": {"job_id": trained.id, "state": trained.state} if trained else None})
            return info.to_dict()

    def info(self, workspace: str, job_id: str, sort_by: Optional[str] = None, page_id: Any = 0,
             ascending: bool = False) -> Dict[str, Any]:
        """`{"page_id", "page_count", "response": JobInfo}` (docs/rest-api.md, services/train_info.py).
        404 JOB_NOT_FOUND, 400 PAGE_ERROR, 404 METRIC_NOT_FOUND, 400 BAD_REQUEST."""
        with self.db.read_scope() as session:
            return job_info(session, workspace, job_id, sort_by, page_id, ascending).to_dict()

    # -- train get ------------------------------------------------------------------------------------------
    def bundle(self, workspace: str, job_id: str, include_code: bool = True, include_data: bool = False,
               include_model: bool = True, model_id: Optional[str] = None) -> StreamedZip:
        """What `kaos train get` downloads of a finished train job (reference §6.10): `code/<bundle:hash>/…`
        (without `pipeline_args.json`), `data/<data:hash>/…`, and `models/<hex6>/…` (the partition's output:
        model/, metrics/, …) of every successful partition — or of `model_id`'s only (the full model id or its
        hex6) — with `models/<hex6>/<hash5>/<combination>.json` for hyperparameter partitions.

        Everything that can fail (unknown job or model, a running job, an input that is gone) fails here, before
        any byte is sent; the zip itself is produced later, file by file, by `StreamedZip.chunks()`."""
        model_id = None if model_id in (None, "", "None", "none", "null") else model_id
        with self.db.read_scope() as session:
            job = find_job(session, workspace, job_id, kinds=("train",))
            if job.state not in TERMINAL:
                raise BadRequest(f"Job {job_id} is still running")
            partitions = list(session.scalars(select(Partition).where(Partition.job_id == job.id)
                                              .order_by(Partition.index)))
            if model_id is not None:
                partitions = [p for p in partitions if model_id in (p.model_id, hex6_of(p.model_id))]
                if not partitions or partitions[0].state != JobState.JOB_SUCCESS.value \
                        or not partitions[0].has_model:
                    raise ModelNotFound(f"There is no model with id: {model_id}")
            models = [(hex6_of(p.model_id), p.hyper_file, p.hyperparams) for p in partitions
                      if p.state == JobState.JOB_SUCCESS.value and p.has_model]
            source = session.get(Bundle, job.source_bundle_id) if job.source_bundle_id else None
            data = session.get(Bundle, job.data_bundle_id) if job.data_bundle_id else None
            source = (source.glob_name, source.root_name, source.blob_digest) if source else None
            data = (data.glob_name, data.root_name, data.blob_digest, data.kind) if data else None
            job_key = job.id
        entries: List[ZipEntry] = []
        if include_code:
            if source is None:
                raise NotFound(f"The source bundle of job {job_id} no longer exists")
            glob_name, root_name, digest = source
            root = self._extracted(digest) / root_name
            entries += [entry for entry in tree_entries(root, f"code/{glob_name}")
                        if entry.name != f"code/{glob_name}/{PIPELINE_ARGS}"]
        if include_data:
            if data is None:
                raise NotFound(f"The data bundle of job {job_id} no longer exists")
            glob_name, root_name, digest, kind = data
            if kind == "manifest":
                root = self.layout.ingested_dir(digest)
                if not root.is_dir():
                    raise NotFound(f"The ingested files of {glob_name} are gone; upload the manifest again")
            else:
                root = self._extracted(digest) / root_name
            entries += tree_entries(root, f"data/{glob_name}")
        if include_model:
            for hex6, hyper_file, hyperparams in models:
                entries += tree_entries(self.layout.output_dir(job_key, hex6), f"models/{hex6}")
                if hyper_file:
                    entries.append(ZipEntry(f"models/{hex6}/{safe_hyper_file(hyper_file)}",
                                            data=json.dumps(hyperparams).encode()))
        return StreamedZip(entries)

    def _extracted(self, digest: str) -> Path:
        return self.layout.extracted(self.uploads.store.path(digest), digest, self.uploads.config.max_bundle_bytes)

    # -- train provenance -----------------------------------------------------------------------------------
    def provenance(self, workspace: str, model_id: str) -> str:
        """The DOT graph of how the model `model_id` came to be (reference §6.9). 404 MODEL_NOT_FOUND."""
        with self.db.read_scope() as session:
            workspace_row = find_workspace(session, workspace)
            partition = find_model(session, workspace_row, model_id)
            job = session.get(Job, partition.job_id)
            parts = model_parts(session, job)
            model_path = model_file_path(self.layout.output_dir(job.id, hex6_of(partition.model_id)),
                                         hex6_of(partition.model_id))
            return model_provenance_dot(workspace, job, partition, parts, model_path)
