"""The workspace train pipeline's rules (reference §6.5, fixed per §11.6): uploads set its inputs at once,
and what a train job looks like to `kaos train info`."""
import math
from typing import Any, Dict, List, Optional

from kaos_model import JobState
from kaos_model.ids import new_job_id
from sqlalchemy import select

from kaos_backend.db import Database
from kaos_backend.errors import BadRequest, MetricNotFound, PageError
from kaos_backend.models import Bundle, Job, Partition, TrainPipeline, Workspace
from kaos_backend.services.jobs import find_job, seconds_between
from kaos_backend.services.uploads import PARAMS_NULL, UploadBody, UploadService
from kaos_backend.services.workspaces import find_workspace

PAGE_SIZE = 10
BUILD_KIND = "build-train"
INGESTION_KIND = "ingestion"


def pipeline_of(session, workspace: Workspace) -> TrainPipeline:
    pipeline = session.get(TrainPipeline, workspace.id)
    if pipeline is None:
        pipeline = TrainPipeline(workspace_id=workspace.id, parallelism=1)
        session.add(pipeline)
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
    if build is not None and build.state not in (JobState.JOB_FAILURE.value, JobState.JOB_KILLED.value):
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


class TrainService:
    def __init__(self, db: Database, uploads: UploadService):
        self.db = db
        self.uploads = uploads

    # -- inputs ---------------------------------------------------------------------------------------------
    def submit_source(self, workspace: str, body: UploadBody, user: str = None, **resources) -> Dict[str, Any]:
        bundle = self.uploads.source("source-train", workspace, body, user, **resources)
        with self.db.session_scope() as session:
            workspace_row = find_workspace(session, workspace)
            pipeline = pipeline_of(session, workspace_row)
            pipeline.source_bundle_id = bundle.id
            pipeline.hyper_bundle_id = None  # the original's rule, now applied at upload time, not by a callback
            pipeline.resources = (bundle.meta or {}).get("resources")
            job_id = request_build(session, workspace_row, bundle, user)
        return {"glob_name": bundle.glob_name, "job_id": job_id}

    def submit_features(self, workspace: str, body: UploadBody, user: str = None, **resources) -> Dict[str, Any]:
        result = self.uploads.features(workspace, body, user, **resources)
        self._set_data(workspace, result["glob_name"], "features")
        return result

    def submit_manifest(self, workspace: str, body: UploadBody, user: str = None, **resources) -> Dict[str, Any]:
        """A data manifest becomes the pipeline's data, as a data bundle does; its files are downloaded by an
        ingestion job (unless this manifest was ingested already), and trainings on it wait for that."""
        result = self.uploads.manifest(workspace, body, user, **resources)
        self._set_data(workspace, result["glob_name"], "manifest")
        return result

    def _set_data(self, workspace: str, glob_name: str, kind: str) -> None:
        with self.db.session_scope() as session:
            workspace_row = find_workspace(session, workspace)
            bundle = session.scalar(select(Bundle).where(Bundle.workspace_id == workspace_row.id,
                                                         Bundle.kind == kind, Bundle.glob_name == glob_name))
            pipeline = pipeline_of(session, workspace_row)
            pipeline.data_bundle_id = bundle.id
            pipeline.hyper_bundle_id = None
            if (bundle.meta or {}).get("resources"):
                pipeline.resources = bundle.meta["resources"]
            if kind == "manifest":
                request_ingestion(session, workspace_row, bundle)

    def submit_params(self, workspace: str, body: UploadBody, user: str = None, parallelism: Any = None,
                      **resources) -> Dict[str, Any]:
        result = self.uploads.params(workspace, body, user, parallelism, **resources)
        with self.db.session_scope() as session:
            workspace_row = find_workspace(session, workspace)
            bundle = session.scalar(select(Bundle).where(Bundle.workspace_id == workspace_row.id,
                                                         Bundle.kind == "params",
                                                         Bundle.glob_name == result["glob_name"]))
            pipeline = pipeline_of(session, workspace_row)
            pipeline.hyper_bundle_id = None if bundle.glob_name == PARAMS_NULL else bundle.id
            pipeline.parallelism = (bundle.meta or {}).get("parallelism") or 1
        return result

    # -- views ----------------------------------------------------------------------------------------------
    def inspect(self, workspace: str) -> Dict[str, Any]:
        with self.db.session_scope() as session:
            workspace_row = find_workspace(session, workspace)
            pipeline = session.get(TrainPipeline, workspace_row.id) or TrainPipeline(parallelism=1)
            source = session.get(Bundle, pipeline.source_bundle_id) if pipeline.source_bundle_id else None
            data = session.get(Bundle, pipeline.data_bundle_id) if pipeline.data_bundle_id else None
            hyper = session.get(Bundle, pipeline.hyper_bundle_id) if pipeline.hyper_bundle_id else None
            state = image_state(latest_build(session, source.id)) if source else "none"
            resources = pipeline.resources or {}
            return {
                "image": f"build-train-{workspace}:{source.hash5}" if source else None,
                "image_state": state,
                "source_glob": f"/{source.glob_name}" if source else None,
                "data_glob": f"/{data.glob_name}" if data else None,
                "hyper_glob": f"/{hyper.glob_name}/*" if hyper else f"/{PARAMS_NULL}",
                "parallelism": pipeline.parallelism or 1,
                "cpu": resources.get("cpu"), "memory": resources.get("memory"), "gpu": resources.get("gpu"),
                "output_branch": output_branch(source, data, hyper) if source and data else None,
            }

    def info(self, workspace: str, job_id: str, sort_by: Optional[str] = None, page_id: Any = 0,
             ascending: bool = False) -> Dict[str, Any]:
        page = _page_number(page_id)
        with self.db.session_scope() as session:
            job = find_job(session, workspace, job_id, kinds=("train",))
            bundles = {bundle.id: bundle for bundle in session.scalars(select(Bundle).where(
                Bundle.id.in_([job.source_bundle_id, job.data_bundle_id, job.hyper_bundle_id])))}
            partitions = list(session.scalars(select(Partition).where(Partition.job_id == job.id)
                                              .order_by(Partition.index)))
            rows = [_partition_info(job, partition, bundles, workspace) for partition in partitions
                    if partition.state == JobState.JOB_SUCCESS.value]
            state, process_time = job.state, seconds_between(job.started_at, job.finished_at)
        metrics = sorted({name for row in rows for name in (row["metrics"] or {})})
        if sort_by:
            rows = _sorted_by_metric(rows, sort_by, ascending)
        page_count = max(1, math.ceil(len(rows) / PAGE_SIZE))
        if page >= page_count:
            raise PageError(f"Page {page} does not exist: there are {page_count} pages (from 0)")
        return {"page_id": page, "page_count": page_count,
                "response": {"job_id": job_id, "state": state, "available_metrics": metrics,
                             "process_time": process_time,
                             "partitions": rows[page * PAGE_SIZE:(page + 1) * PAGE_SIZE]}}


def _page_number(page_id: Any) -> int:
    try:
        page = int(page_id if page_id not in (None, "") else 0)
    except (TypeError, ValueError):
        raise PageError(f"Page id must be a whole number, not {page_id!r}") from None
    if page < 0:
        raise PageError(f"Page id must not be negative: {page}")
    return page


def _descriptor(bundle: Optional[Bundle]) -> Optional[Dict[str, Any]]:
    if bundle is None:
        return None
    return {"repo": bundle.kind, "path": f"/{bundle.glob_name}", "commit": bundle.blob_digest[:32],
            "author": bundle.user}


def _partition_info(job: Job, partition: Partition, bundles: Dict[int, Bundle], workspace: str) -> Dict[str, Any]:
    source = bundles.get(job.source_bundle_id)
    hyper = None
    if partition.hyper_file:
        hyper_bundle = bundles.get(job.hyper_bundle_id)
        hyper = {"repo": "params", "path": f"/{partition.hyper_file}", "values": partition.hyperparams,
                 "author": hyper_bundle.user if hyper_bundle else None}
    hex6 = partition.model_id.rsplit(":", 1)[1]
    return {"datum_id": f"{job.id}-{partition.index}",
            "code": _descriptor(source),
            "data": _descriptor(bundles.get(job.data_bundle_id)),
            "image": {"path": f"build-train-{workspace}:{source.hash5}" if source else None},
            "output": {"model_id": partition.model_id, "path": f"/{hex6}/model/"},
            "hyperparams": hyper, "metrics": partition.metrics or {}, "score": None,
            "state": partition.state}


def _sorted_by_metric(rows: List[Dict[str, Any]], metric: str, ascending: bool) -> List[Dict[str, Any]]:
    if not any(metric in (row["metrics"] or {}) for row in rows):
        raise MetricNotFound(f"Metric {metric} not found")
    scored, unscored = [], []
    for row in rows:
        value = (row["metrics"] or {}).get(metric)
        if value is None:
            unscored.append(row)
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BadRequest(f"Metric {metric} is not numeric (e.g. {str(value)[:40]!r}): it cannot be sorted on")
        row["score"] = f"{value:.4f}"
        scored.append((value, row))
    scored.sort(key=lambda pair: pair[0], reverse=not ascending)
    return [row for _, row in scored] + unscored
