"""Builds: turn a source bundle into an image (local: a virtualenv) and report the build job's state."""
import logging
from pathlib import Path
from typing import List

from kaos_model import JobState

from kaos_backend.control.common import Preamble, advance_unfinished, exit_state, finish, now, single_workload_exit
from kaos_backend.errors import InvalidBundle, PayloadTooLarge
from kaos_backend.executors import make_executor
from kaos_backend.executors.base import WorkloadSpec
from kaos_backend.logs import JobLog
from kaos_backend.models import Bundle, Job

log = logging.getLogger("kaos_backend.control.builds")

# Which requirements files make a kind's image, in install order.
REQUIREMENTS = {
    "build-train": ("requirements.txt",),
    "build-serve": ("requirements.txt", "web-requirements.txt"),
    "build-notebook": ("requirements.txt",),
}


class BuildController:
    def __init__(self, services):
        self.services = services
        self.config = services.config
        self.layout = services.layout

    def tick(self) -> None:
        advance_unfinished(self.services, REQUIREMENTS, self.advance, log)

    def advance(self, session, job: Job) -> None:
        job_log = JobLog(self.layout.log_path(job.id))
        code = single_workload_exit(job, self.config, job_log, "build", lambda: self.start(session, job, job_log))
        if code is not None:
            finish(job, exit_state(code))

    def start(self, session, job: Job, job_log: JobLog) -> None:
        bundle = session.get(Bundle, job.source_bundle_id)
        if bundle is None:
            finish(job, JobState.JOB_FAILURE, "kaos: the source bundle of this build was deleted", job_log)
            return
        preamble = Preamble(job.id)
        try:
            with preamble.downloading():
                root = self.layout.extracted(self.services.store.path(bundle.blob_digest), bundle.blob_digest,
                                             self.config.max_bundle_bytes) / bundle.root_name
        except (InvalidBundle, PayloadTooLarge) as refused:  # stored before today's bundle checks existed
            finish(job, JobState.JOB_FAILURE, f"kaos: {refused.message}", job_log)
            return
        model_dir = root / "model"
        spec = WorkloadSpec(job_id=job.id, kind="build", command=[], workdir=str(model_dir),
                            log_path=str(job_log.path), preamble=preamble.lines(),
                            requirements=self._requirements(job.kind, model_dir))
        executor = make_executor(self.config)
        job.started_at = now()
        image = executor.image_for(spec)
        if executor.is_image_ready(image):  # a warm build: nothing to run
            job_log.append(*spec.preamble, f"Using cached image {image}")
            job.image = image
            finish(job, JobState.JOB_SUCCESS)
            return
        job.image = executor.build(spec, root)
        job.executor_state = executor.get_state()
        job.state = JobState.JOB_RUNNING.value

    @staticmethod
    def _requirements(kind: str, model_dir: Path) -> List[str]:
        return [str(model_dir / name) for name in REQUIREMENTS[kind]]
