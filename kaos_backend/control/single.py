"""The life of a job that runs one workload (a build, an ingestion): start it, watch it, kill it on request,
notice that it vanished, and fail it with the error when its controller keeps raising."""
import logging
from typing import Dict, Optional

from kaos_model import JobState

from kaos_backend.control.common import (KILLED_REASON, VANISHED, Controller, advance_each, end_reason,
                                         exit_state, finished, load, log_of, now, reattached, unfinished_job_ids,
                                         update)
from kaos_backend.executors.base import Executor, job_log_name
from kaos_backend.models import Job


def _unfinished(row) -> bool:
    return row.finished_at is None


class SingleWorkloadController(Controller):
    kinds: tuple = ()
    what = "workload"                   # "build", "ingestion": how the log and the reasons name it
    log = logging.getLogger("kaos_backend.control")

    def tick(self) -> None:
        advance_each(unfinished_job_ids(self.services, self.kinds), self.advance, self.retries, self.give_up,
                     self.log, self.what.capitalize())

    def advance(self, job_id: str) -> None:
        job = load(self.services, Job, job_id)
        if job is None or job.finished_at is not None:
            return
        job_log = log_of(self.config, job_log_name(job.id))
        executor = reattached(self.config, job.executor_state)
        if job.desired == "kill":
            self._kill(job, executor, job_log)
        elif job.state == JobState.JOB_STARTING.value:
            changes = self.start(job, job_log)
            starting = lambda row: row.finished_at is None and row.state == JobState.JOB_STARTING.value  # noqa: E731
            if not update(self.services, Job, job.id, changes, only_if=starting) and changes.get("executor_state"):
                reattached(self.config, changes["executor_state"]).stop(now=True)  # the job went away meanwhile
        else:
            code = executor.poll() if executor is not None else VANISHED
            if code is not None:
                if code == VANISHED:
                    job_log.append_log(f"kaos: the {self.what} ended: {end_reason(executor, code)}")
                update(self.services, Job, job.id, self.finish(job, code, executor, job_log), only_if=_unfinished)

    def _kill(self, job: Job, executor: Optional[Executor], job_log: Executor) -> None:
        if executor is not None:
            executor.stop()
        else:
            job_log.append_log(f"kaos: the {self.what} ended: {KILLED_REASON}")
        changes = finished(JobState.JOB_KILLED, KILLED_REASON)
        if job.started_at is None:
            changes["started_at"] = now()
        update(self.services, Job, job.id, changes, only_if=_unfinished)

    def give_up(self, job_id: str, reason: str) -> None:
        job = load(self.services, Job, job_id)
        if job is None:
            return
        executor = reattached(self.config, job.executor_state)
        if executor is not None:
            executor.stop(now=True)
        log_of(self.config, job_log_name(job_id)).append_log(reason)
        changes = finished(JobState.JOB_FAILURE, reason)
        if job.started_at is None:
            changes["started_at"] = now()
        update(self.services, Job, job_id, changes, only_if=_unfinished)

    # -- what each kind does ----------------------------------------------------------------------------------
    def start(self, job: Job, job_log: Executor) -> Dict:
        """Start the workload (I/O, no transaction open); the job's changes (state, executor_state, ...)."""
        raise NotImplementedError

    def finish(self, job: Job, code: int, executor: Optional[Executor], job_log: Executor) -> Dict:
        """The job's changes once its workload ended with `code`."""
        return finished(exit_state(code), None if code == 0 else end_reason(executor, code))

    def fail(self, job_log: Executor, reason: str) -> Dict:
        """The changes (and the log record) of a job that fails before its workload could start."""
        job_log.append_log(reason)
        return {"started_at": now(), **finished(JobState.JOB_FAILURE, reason)}
