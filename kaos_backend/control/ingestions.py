"""Ingestions: download the files of a data manifest (reference §6.1 `ingestion-<ws>`, §6.8) so that trainings
on that manifest find them under `KAOS_TRAIN_DATA`. The workload is `executors/ingest.py`, run like any other
through the executor; its files land in `DataLayout.ingested_dir(<manifest blob digest>)`."""
import logging
import sys
from pathlib import Path
from typing import Optional

from kaos_model import JobState

from kaos_backend.control.common import (MAX_REASON, Preamble, advance_unfinished, exit_state, finish, now,
                                         single_workload_exit)
from kaos_backend.executors import make_executor
from kaos_backend.executors.base import WorkloadSpec
from kaos_backend.logs import JobLog
from kaos_backend.models import Bundle, Job
from kaos_backend.services.train import INGESTION_KIND

log = logging.getLogger("kaos_backend.control.ingestions")

INGEST = str(Path(__file__).resolve().parents[1] / "executors" / "ingest.py")
WORKERS = 3  # the original's ingestion pipeline ran 3 workers


class IngestionController:
    def __init__(self, services):
        self.services = services
        self.config = services.config
        self.layout = services.layout

    def tick(self) -> None:
        advance_unfinished(self.services, (INGESTION_KIND,), self.advance, log)

    def advance(self, session, job: Job) -> None:
        job_log = JobLog(self.layout.log_path(job.id))
        code = single_workload_exit(job, self.config, job_log, "ingestion", lambda: self.start(session, job, job_log))
        if code is None:
            return
        out = Path(job.executor_state["output_dir"])
        if code == 0 and not out.is_dir():
            finish(job, JobState.JOB_FAILURE, f"kaos: the ingestion exited 0 but {out} does not exist", job_log)
            return
        finish(job, exit_state(code))
        if code != 0:
            job.reason = (self._last_record(job_log) or f"the ingestion exited with code {code}")[:MAX_REASON]

    def start(self, session, job: Job, job_log: JobLog) -> None:
        bundle = session.get(Bundle, job.data_bundle_id) if job.data_bundle_id else None
        job.started_at = now()
        if bundle is None:
            finish(job, JobState.JOB_FAILURE, "kaos: the manifest of this ingestion was deleted", job_log)
            return
        preamble = Preamble(job.id)
        with preamble.downloading():
            manifest = self.services.store.path(bundle.blob_digest)
            out = self.layout.ingested_dir(bundle.blob_digest)
            workdir = self.layout.job_dir(job.id)
            workdir.mkdir(parents=True, exist_ok=True)
        if out.is_dir():  # this manifest was ingested already (another workspace, or an earlier job)
            job_log.append(*preamble.lines(), f"the files of {bundle.glob_name} are already ingested in {out}")
            finish(job, JobState.JOB_SUCCESS)
            return
        spec = WorkloadSpec(
            job_id=job.id, kind="ingestion", workdir=str(workdir), log_path=str(job_log.path),
            command=[sys.executable, INGEST, "--manifest", str(manifest), "--out", str(out),
                     "--workers", str(WORKERS)],
            preamble=preamble.lines())
        executor = make_executor(self.config)
        executor.start(spec)
        job.executor_state = {**executor.get_state(), "output_dir": str(out)}
        job.state = JobState.JOB_RUNNING.value
        log.info("Ingestion %s of %s started", job.id, bundle.glob_name)

    @staticmethod
    def _last_record(job_log: JobLog) -> Optional[str]:
        """The text of the log's last record (the ingestion's own failure line), without its timestamp."""
        lines = job_log.lines()
        if not lines:
            return None
        text = lines[-1]
        return text.split("] ", 1)[1] if text.startswith("[") and "] " in text else text
