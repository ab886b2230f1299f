"""Ingestions: download the files of a data manifest (reference §6.1 `ingestion-<ws>`, §6.8) so that trainings
on that manifest find them under `KAOS_TRAIN_DATA`. The workload is an ingestion spec (the manifest in, its
INGESTED files out), run like any other through the executor (the local one runs `executors/ingest.py`); the
files land in `DataLayout.ingested_dir(<manifest blob digest>)`."""
import logging
from typing import Dict, Optional

from kaos_model import JobState

from kaos_backend.control.common import (Preamble, bundle_artifact, end_reason, exit_state, finished, load, now,
                                         processing)
from kaos_backend.control.single import SingleWorkloadController
from kaos_backend.executors import make_executor
from kaos_backend.executors.base import Artifact, ArtifactMissing, Executor, WorkloadSpec
from kaos_backend.models import Bundle, Job
from kaos_backend.services.train import INGESTION_KIND

class IngestionController(SingleWorkloadController):
    kinds = (INGESTION_KIND,)
    what = "ingestion"
    log = logging.getLogger("kaos_backend.control.ingestions")

    def start(self, job: Job, job_log: Executor) -> Dict:
        bundle = load(self.services, Bundle, job.data_bundle_id) if job.data_bundle_id else None
        if bundle is None:
            return self.fail(job_log, "kaos: the manifest of this ingestion was deleted")
        out = self.layout.ingested_dir(bundle.blob_digest)
        if out.is_dir():  # this manifest was ingested already (another workspace, or an earlier job)
            job_log.append_log(*Preamble.for_job(job.id).lines(),
                               f"the files of {bundle.glob_name} are already ingested in {out}")
            return {"started_at": now(), **finished(JobState.JOB_SUCCESS)}
        spec = WorkloadSpec(job_id=job.id, kind="ingestion", log=job_log.log_name, preamble=processing(job.id),
                            data=bundle_artifact(bundle),
                            output=Artifact(Artifact.INGESTED, bundle.blob_digest, name=bundle.glob_name))
        executor = make_executor(self.config)
        try:
            executor.start(spec)
        except ArtifactMissing as missing:
            return self.fail(job_log, f"kaos: the manifest of this ingestion is missing: {missing}")
        self.log.info("Ingestion %s of %s started", job.id, bundle.glob_name)
        return {"executor_state": executor.get_state(), "state": JobState.JOB_RUNNING.value, "started_at": now()}

    def finish(self, job: Job, code: int, executor: Optional[Executor], job_log: Executor) -> Dict:
        bundle = load(self.services, Bundle, job.data_bundle_id) if job.data_bundle_id else None
        out = self.layout.ingested_dir(bundle.blob_digest) if bundle is not None else None
        if code == 0 and (out is None or not out.is_dir()):
            reason = f"kaos: the ingestion exited 0 but {out or 'its manifest'} does not exist"
            job_log.append_log(reason)
            return finished(JobState.JOB_FAILURE, reason)
        if code == 0:
            return finished(JobState.JOB_SUCCESS)
        return finished(exit_state(code), self._failure_line(job_log) or end_reason(executor, code))

    @staticmethod
    def _failure_line(job_log: Executor) -> Optional[str]:
        """The ingestion's own failure line ("ingestion failed: cannot download ..."), without its timestamp."""
        for text in reversed(list(job_log.logs())[-20:]):
            text = text.split("] ", 1)[1] if text.startswith("[") and "] " in text else text
            if text.startswith("ingestion failed"):
                return text
        return None
