"""Trainings: start a train job for every new input combination of a workspace's train pipeline, run its
partitions (one per hyperparameter combination, `parallelism` at a time) and collect models and metrics."""
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Dict, List, Optional

from kaos_model import JobState
from kaos_model.ids import new_hex6, new_job_id
from sqlalchemy import exists, select

from kaos_backend.control.common import (VANISHED, Preamble, advance_unfinished, exit_state, finish, now,
                                         reattached, vanished_reason)
from kaos_backend.errors import InvalidBundle, PayloadTooLarge
from kaos_backend.executors import make_executor
from kaos_backend.executors.base import WorkloadSpec
from kaos_backend.logs import JobLog
from kaos_backend.models import Bundle, Job, Partition, TrainPipeline, Workspace
from kaos_backend.services.train import latest_build, latest_ingestion, output_branch, request_ingestion

log = logging.getLogger("kaos_backend.control.trainings")

_UNSAFE_IN_NAME = re.compile(r"[^A-Za-z0-9.=,+-]")
RUNNING_STATES = (JobState.JOB_STARTING.value, JobState.JOB_RUNNING.value)


def combination_name(combination: Dict) -> str:
    """`degree=3_kernel=poly`: the original's file name of one hyperparameter combination. Keys and values are
    user data: anything but letters, digits and `.=,+-` becomes `_`, so the name never leaves its directory."""
    name = "_".join(f"{key}={value}" for key, value in combination.items())
    name = _UNSAFE_IN_NAME.sub("_", name)[:200]
    return "_" + name if name.startswith(".") else name


class TrainController:
    def __init__(self, services):
        self.services = services
        self.config = services.config
        self.layout = services.layout

    def tick(self) -> None:
        self.schedule()
        advance_unfinished(self.services, ("train",), self.advance, log)

    # -- creating jobs --------------------------------------------------------------------------------------
    def schedule(self) -> None:
        """A job for each pipeline whose current inputs are complete, built, and not trained yet."""
        with self.services.db.session_scope() as session:
            pipelines = list(session.scalars(select(TrainPipeline).where(
                TrainPipeline.source_bundle_id.is_not(None), TrainPipeline.data_bundle_id.is_not(None))))
            for pipeline in pipelines:
                self._schedule_one(session, pipeline)

    def _schedule_one(self, session, pipeline: TrainPipeline) -> Optional[Job]:
        source = session.get(Bundle, pipeline.source_bundle_id)
        data = session.get(Bundle, pipeline.data_bundle_id)
        hyper = session.get(Bundle, pipeline.hyper_bundle_id) if pipeline.hyper_bundle_id else None
        build = latest_build(session, source.id)
        if build is None or build.state != JobState.JOB_SUCCESS.value:
            return None  # the current source's image is not ready (or failed): nothing to train yet
        if data.kind == "manifest" and not self._ingested(session, pipeline, data):
            return None  # likewise while the manifest's files are not all downloaded (or could not be)
        branch = output_branch(source, data, hyper)
        if session.scalar(select(exists().where(Job.workspace_id == pipeline.workspace_id, Job.kind == "train",
                                                Job.branch == branch))):
            return None  # this input combination was trained already: identical resubmissions start nothing
        job = Job(id=new_job_id(), workspace_id=pipeline.workspace_id, kind="train",
                  state=JobState.JOB_STARTING.value, user=source.user, source_bundle_id=source.id,
                  data_bundle_id=data.id, hyper_bundle_id=hyper.id if hyper else None, branch=branch,
                  image=build.image, parallelism=max(1, pipeline.parallelism or 1), resources=pipeline.resources)
        session.add(job)
        grid: List[Dict] = ((hyper.meta or {}).get("grid") if hyper else None) or [None]
        for index, combination in enumerate(grid):
            session.add(Partition(
                job_id=job.id, index=index, model_id=f"{branch}:{self._unused_hex6(session, branch)}",
                hyperparams=combination, state=JobState.JOB_STARTING.value,
                hyper_file=f"{hyper.glob_name}/{combination_name(combination)}.json" if combination else None))
            session.flush()
        log.info("Train job %s scheduled for branch %s (%d partitions)", job.id, branch, len(grid))
        return job

    @staticmethod
    def _ingested(session, pipeline: TrainPipeline, manifest: Bundle) -> bool:
        ingestion = latest_ingestion(session, manifest.id)
        if ingestion is None:  # a manifest set as data before uploads started ingestions: start one now
            workspace = session.get(Workspace, pipeline.workspace_id)
            request_ingestion(session, workspace, manifest)
            return False
        return ingestion.state == JobState.JOB_SUCCESS.value

    @staticmethod
    def _unused_hex6(session, branch: str) -> str:
        while True:
            hex6 = new_hex6()
            if not session.scalar(select(exists().where(Partition.model_id == f"{branch}:{hex6}"))):
                return hex6

    # -- running jobs ---------------------------------------------------------------------------------------
    def advance(self, session, job: Job) -> None:
        job_log = JobLog(self.layout.log_path(job.id))
        partitions = list(session.scalars(select(Partition).where(Partition.job_id == job.id)
                                          .order_by(Partition.index)))
        if job.desired == "kill":
            for partition in partitions:
                if partition.state in RUNNING_STATES:
                    executor = reattached(self.config, partition.executor_state)
                    if executor is not None:
                        executor.stop()
                    finish(partition, JobState.JOB_KILLED)
            finish(job, JobState.JOB_KILLED, "kaos: job killed on request", job_log)
            return
        for partition in partitions:
            if partition.state == JobState.JOB_RUNNING.value:
                self._poll(partition, job_log)
        running = sum(partition.state == JobState.JOB_RUNNING.value for partition in partitions)
        for partition in partitions:
            if partition.state == JobState.JOB_STARTING.value and running < job.parallelism:
                try:
                    self._start(session, job, partition, job_log)
                except (InvalidBundle, PayloadTooLarge) as refused:  # stored before today's bundle checks
                    finish(partition, JobState.JOB_FAILURE, f"kaos: {refused.message}", job_log)
                    continue
                running += 1
        if job.state == JobState.JOB_STARTING.value and running:
            job.state = JobState.JOB_RUNNING.value
            job.started_at = now()
        if all(partition.state not in RUNNING_STATES for partition in partitions):
            failed = [p for p in partitions if p.state != JobState.JOB_SUCCESS.value]
            if job.started_at is None:
                job.started_at = now()
            finish(job, JobState.JOB_FAILURE if failed else JobState.JOB_SUCCESS)

    def _poll(self, partition: Partition, job_log: JobLog) -> None:
        executor = reattached(self.config, partition.executor_state)
        if executor is None:
            finish(partition, JobState.JOB_FAILURE, log=job_log, reason=vanished_reason("training"))
            return
        code = executor.poll()
        if code is None:
            return
        partition.exit_code = code
        if code == VANISHED:
            finish(partition, JobState.JOB_FAILURE, vanished_reason("training"), job_log)
            return
        out = Path(partition.executor_state["output_dir"])
        if code == 0 and not (out / "model").is_dir():
            finish(partition, JobState.JOB_FAILURE,
                   f"kaos: train exited 0 but wrote no model: expected the directory {out / 'model'}", job_log)
            return
        partition.has_model = (out / "model").is_dir()
        partition.metrics = read_metrics(out)
        finish(partition, exit_state(code))

    def _start(self, session, job: Job, partition: Partition, job_log: JobLog) -> None:
        source = session.get(Bundle, job.source_bundle_id)
        data = session.get(Bundle, job.data_bundle_id)
        workspace = session.get(Workspace, job.workspace_id)
        if source is None or data is None:
            finish(partition, JobState.JOB_FAILURE, "kaos: an input bundle of this job was deleted", job_log)
            return
        if data.kind == "manifest" and not self.layout.ingested_dir(data.blob_digest).is_dir():
            finish(partition, JobState.JOB_FAILURE, f"kaos: the ingested files of {data.glob_name} are missing "
                   f"({self.layout.ingested_dir(data.blob_digest)}); upload the manifest again", job_log)
            return
        preamble = Preamble(job.id)
        with preamble.downloading():
            store, limit = self.services.store, self.config.max_bundle_bytes
            if data.kind == "manifest":
                data_root = self.layout.ingested_dir(data.blob_digest)
            else:
                data_root = (self.layout.extracted(store.path(data.blob_digest), data.blob_digest, limit)
                             / data.root_name)
            source_root = self.layout.extracted(store.path(source.blob_digest), source.blob_digest, limit)
            work = self.layout.work_dir(job.id, partition.index)
            shutil.rmtree(work, ignore_errors=True)
            shutil.copytree(source_root / source.root_name / "model", work)
            hyper = self.layout.hyper_dir(job.id, partition.index)
            shutil.rmtree(hyper, ignore_errors=True)
            hyper.mkdir(parents=True)
            if partition.hyper_file:
                target = hyper / partition.hyper_file
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(json.dumps(partition.hyperparams))
        train = work / "train"
        if train.exists():
            os.chmod(train, train.stat().st_mode | 0o755)  # zips made on some systems lose the exec bit
        out = self.layout.output_dir(job.id, partition.model_id.rsplit(":", 1)[1])
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        resources = job.resources or {}
        spec = WorkloadSpec(
            job_id=f"{job.id}-{partition.index}", kind="train", command=["./train", str(out)], workdir=str(work),
            log_path=str(job_log.path), image=job.image, preamble=preamble.lines(),
            env={"KAOS_TRAIN_DATA": str(data_root), "KAOS_TRAIN_HYPER": str(hyper), "KAOS_TRAIN_OUTPUT": str(out),
                 "KAOS_JOB_ID": job.id, "KAOS_WORKSPACE": workspace.name, "KAOS_MODEL_ID": partition.model_id},
            cpu=resources.get("cpu"), memory=resources.get("memory"), gpu=resources.get("gpu") or 0)
        executor = make_executor(self.config)
        executor.start(spec)
        partition.executor_state = {**executor.get_state(), "output_dir": str(out)}
        partition.state = JobState.JOB_RUNNING.value
        partition.started_at = now()


def read_metrics(out: Path) -> Optional[Dict]:
    """The first `metrics/**/*metrics*.json` holding a JSON object, else None."""
    for path in sorted((out / "metrics").glob("**/*metrics*.json")):
        try:
            value = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(value, dict):
            return value
    return None
