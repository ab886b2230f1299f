"""Scheduling trainings: a train job (and its partitions, one per hyperparameter combination) for each workspace
whose train pipeline's current inputs are complete, built and not trained yet; called by the train controller's tick
(control/trainings.py)."""
import logging
import re
from typing import Dict, List, Optional

from kaos_model import JobState
from kaos_model.ids import new_hex6, new_job_id
from sqlalchemy import exists, select

from kaos_backend.control.common import reading
from kaos_backend.models import Bundle, Job, Partition, TrainPipeline, Workspace
from kaos_backend.services.train_retry import standing_job
from kaos_backend.services.train import held, latest_build, latest_ingestion, output_branch, request_ingestion

log = logging.getLogger("kaos_backend.control.trainings")

_UNSAFE_IN_NAME = re.compile(r"[^A-Za-z0-9.=,+-]")


def schedule(services) -> None:
    """A job for each pipeline whose current inputs are complete, built, and not trained yet: each pipeline in
    a transaction of its own, so that one that cannot be scheduled (logged) does not hold up the others."""
    with reading(services) as session:
        workspace_ids = list(session.scalars(select(TrainPipeline.workspace_id).where(
            TrainPipeline.source_bundle_id.is_not(None), TrainPipeline.data_bundle_id.is_not(None))))
    for workspace_id in workspace_ids:
        try:
            with services.db.session_scope() as session:
                pipeline = _locked_pipeline(session, workspace_id)
                if pipeline is not None:
                    _schedule_one(session, pipeline)
        except Exception:  # noqa: BLE001
            log.exception("The train pipeline of workspace #%s could not be scheduled", workspace_id)


def _locked_pipeline(session, workspace_id: int) -> Optional[TrainPipeline]:
    """The workspace's pipeline, read after the workspace's row is locked for sharing (None when it is gone).

    A workspace kill locks that row for update before it deletes the workspace's jobs (WorkspaceService.delete),
    so on PostgreSQL a job is inserted either before the kill reads the jobs (and goes with them) or not at all:
    never for a workspace deleted meanwhile. A SQLite write transaction holds the whole database."""
    if session.scalar(select(Workspace.id).where(Workspace.id == workspace_id)
                      .with_for_update(read=True)) is None:
        return None
    return session.scalar(select(TrainPipeline).where(TrainPipeline.workspace_id == workspace_id)
                          .execution_options(populate_existing=True))


def _schedule_one(session, pipeline: TrainPipeline) -> Optional[Job]:
    if held(pipeline):
        return None  # a deploy's inputs are still arriving (services/train.py): its last one wakes the scheduler
    source = session.get(Bundle, pipeline.source_bundle_id)
    data = session.get(Bundle, pipeline.data_bundle_id)
    hyper = session.get(Bundle, pipeline.hyper_bundle_id) if pipeline.hyper_bundle_id else None
    build = latest_build(session, source.id)
    if build is None or build.state != JobState.JOB_SUCCESS.value:
        return None  # the current source's image is not ready (or failed): nothing to train yet
    if data.kind == "manifest" and not _ingested(session, pipeline, data):
        return None  # likewise while the manifest's files are not all downloaded (or could not be)
    branch = output_branch(source, data, hyper)
    if standing_job(session, pipeline, branch) is not None:
        return None  # this input combination was trained already: identical resubmissions start nothing
    job = Job(id=new_job_id(), workspace_id=pipeline.workspace_id, kind="train",
              state=JobState.JOB_STARTING.value, user=source.user, source_bundle_id=source.id,
              data_bundle_id=data.id, hyper_bundle_id=hyper.id if hyper else None, branch=branch,
              image=build.image, parallelism=max(1, pipeline.parallelism or 1), resources=pipeline.resources)
    session.add(job)
    grid: List[Dict] = ((hyper.meta or {}).get("grid") if hyper else None) or [None]
    for index, combination in enumerate(grid):
        session.add(Partition(
            job_id=job.id, index=index, model_id=f"{branch}:{_unused_hex6(session, branch)}",
            hyperparams=combination, state=JobState.JOB_STARTING.value,
            hyper_file=f"{hyper.glob_name}/{combination_name(combination)}.json" if combination else None))
        session.flush()
    log.info("Train job %s scheduled for branch %s (%d partitions)", job.id, branch, len(grid))
    return job


def _ingested(session, pipeline: TrainPipeline, manifest: Bundle) -> bool:
    ingestion = latest_ingestion(session, manifest.id)
    if ingestion is None:  # a manifest set as data before uploads started ingestions: start one now
        workspace = session.get(Workspace, pipeline.workspace_id)
        request_ingestion(session, workspace, manifest)
        return False
    return ingestion.state == JobState.JOB_SUCCESS.value


def _unused_hex6(session, branch: str) -> str:
    while True:
        hex6 = new_hex6()
        if not session.scalar(select(exists().where(Partition.model_id == f"{branch}:{hex6}"))):
            return hex6


def combination_name(combination: Dict) -> str:
    """`degree=3_kernel=poly`: the original's file name of one hyperparameter combination. Keys and values are
    user data: anything but letters, digits and `.=,+-` becomes `_`, so the name never leaves its directory."""
    name = "_".join(f"{key}={value}" for key, value in combination.items())
    name = _UNSAFE_IN_NAME.sub("_", name)[:200]
    return "_" + name if name.startswith(".") else name
