"""Ingestions: download the files of a data manifest (reference §6.1 `ingestion-<ws>`, §6.8) so that trainings
on that manifest find them under `KAOS_TRAIN_DATA`. The workload is `executors/ingest.py`, run like any other
through the executor; its files land in `DataLayout.ingested_dir(<manifest blob digest>)`."""
import logging
import shutil
import sys
from pathlib import Path
from typing import Dict, Optional

from kaos_model import JobState

from kaos_backend.control.common import Preamble, end_reason, exit_state, finished, load, now
from kaos_backend.control.single import SingleWorkloadController
from kaos_backend.executors import make_executor
from kaos_backend.executors.base import Executor, WorkloadSpec
from kaos_backend.models import Bundle, Job
from kaos_backend.services.train import INGESTION_KIND

INGEST = str(Path(__file__).resolve().parents[1] / "executors" / "ingest.py")
WORKERS = 3  # the original's ingestion pipeline ran 3 workers
MANIFEST_NAME = "data.mf"


class IngestionController(SingleWorkloadController):
    kinds = (INGESTION_KIND,)
    what = "ingestion"
    log = logging.getLogger("kaos_backend.control.ingestions")

    def start(self, job: Job, job_log: Executor) -> Dict:
        bundle = load(self.services, Bundle, job.data_bundle_id) if job.data_bundle_id else None
        if bundle is None:
            return self.fail(job_log, "kaos: the manifest of this ingestion was deleted")
        preamble = Preamble(job.id)
        out = self.layout.ingested_dir(bundle.blob_digest)
        if out.is_dir():  # this manifest was ingested already (another workspace, or an earlier job)
            job_log.append_log(*preamble.lines(), f"the files of {bundle.glob_name} are already ingested in {out}")
            return {"started_at": now(), **finished(JobState.JOB_SUCCESS)}
        with preamble.downloading():
            workdir = self.layout.work_dir(job.id)
            workdir.mkdir(parents=True, exist_ok=True)
            manifest = workdir / MANIFEST_NAME  # a copy the workload may read (the blob store is private)
            shutil.copyfile(self.services.store.path(bundle.blob_digest), manifest)
            out.parent.mkdir(parents=True, exist_ok=True)
        spec = WorkloadSpec(
            job_id=job.id, kind="ingestion", workdir=str(workdir), log=job_log.log_name,
            command=[sys.executable, INGEST, "--manifest", str(manifest), "--out", str(out),
                     "--workers", str(WORKERS)],
            outputs=[str(out.parent)], preamble=preamble.lines())
        executor = make_executor(self.config)
        executor.start(spec)
        self.log.info("Ingestion %s of %s started", job.id, bundle.glob_name)
        return {"executor_state": {**executor.get_state(), "output_dir": str(out)},
                "state": JobState.JOB_RUNNING.value, "started_at": now()}

    def finish(self, job: Job, code: int, executor: Optional[Executor], job_log: Executor) -> Dict:
        out = Path(job.executor_state["output_dir"])
        if code == 0 and not out.is_dir():
            reason = f"kaos: the ingestion exited 0 but {out} does not exist"
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
