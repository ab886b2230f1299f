"""Builds: turn a source bundle into an image (local: a virtualenv) and report the build job's state."""
import logging
from typing import Dict

from kaos_model import JobState
from sqlalchemy import exists, select

from kaos_backend.control.common import Preamble, bundle_artifact, finished, load, now, processing, reading
from kaos_backend.control.single import SingleWorkloadController
from kaos_backend.errors import InvalidBundle, PayloadTooLarge
from kaos_backend.executors import make_executor
from kaos_backend.executors.base import ArtifactMissing, Executor, WorkloadSpec
from kaos_backend.models import Bundle, Job, Workspace
from kaos_backend.services.descriptors import image_name

# Which requirements files make a kind's image, in install order.
REQUIREMENTS = {
    "build-train": ("requirements.txt",),
    "build-serve": ("requirements.txt", "web-requirements.txt"),
    "build-notebook": ("requirements.txt",),
}


class BuildController(SingleWorkloadController):
    kinds = tuple(REQUIREMENTS)
    what = "build"
    log = logging.getLogger("kaos_backend.control.builds")

    def start(self, job: Job, job_log: Executor) -> Dict:
        bundle = load(self.services, Bundle, job.source_bundle_id) if job.source_bundle_id else None
        if bundle is None:
            return self.fail(job_log, "kaos: the source bundle of this build was deleted")
        workspace = load(self.services, Workspace, job.workspace_id)
        spec = WorkloadSpec(job_id=job.id, kind="build", log=job_log.log_name, preamble=processing(job.id),
                            source=bundle_artifact(bundle), requirements=list(REQUIREMENTS[job.kind]),
                            image_name=image_name(workspace.name, bundle, job.kind) if workspace else None)
        executor = make_executor(self.config)
        preamble = Preamble.for_job(job.id)
        try:
            with preamble.downloading():
                image = executor.image_for(spec)
        except (InvalidBundle, PayloadTooLarge) as refused:  # stored before today's bundle checks existed
            return self.fail(job_log, f"kaos: {refused.message}")
        except ArtifactMissing as missing:
            return self.fail(job_log, f"kaos: the source bundle of this build is missing: {missing}")
        if executor.is_image_ready(image):  # a warm build: nothing to run
            job_log.append_log(*preamble.lines(), *executor.build_notes(spec), f"Using cached image {image}")
            return {"image": image, "started_at": now(), **finished(JobState.JOB_SUCCESS)}
        if self._being_built(image, job.id):
            # another build makes this image: wait for it, then this one is a warm build. The image is recorded
            # meanwhile: that build is waited for (images.cancel_unwaited_build keeps it when its own workload goes)
            return {"image": image} if job.image != image else {}
        image = executor.build(spec)
        return {"image": image, "executor_state": executor.get_state(), "state": JobState.JOB_RUNNING.value,
                "started_at": now()}

    def _being_built(self, image: str, job_id: str) -> bool:
        with reading(self.services) as session:
            return bool(session.scalar(select(exists().where(
                Job.kind.in_(self.kinds), Job.state == JobState.JOB_RUNNING.value, Job.image == image,
                Job.id != job_id))))
