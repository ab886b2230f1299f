"""Pieces the controllers share: the log preamble, finishing a job, reattaching an executor."""
import logging
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Callable, Iterator, List, Optional

from kaos_model import JobState

from kaos_backend.executors import make_executor
from kaos_backend.executors.base import VANISHED, Executor
from kaos_backend.logs import JobLog

MAX_REASON = 1000


def now() -> datetime:
    return datetime.now(timezone.utc)


class Preamble:
    """The records a job's log starts with, as the original's workers wrote them (seed debugging page)."""

    def __init__(self, job_id: str):
        self.job_id = job_id
        self._started = time.monotonic()

    @contextmanager
    def downloading(self) -> Iterator[None]:
        self._started = time.monotonic()
        yield
        self._elapsed_ms = (time.monotonic() - self._started) * 1000

    def lines(self) -> List[str]:
        elapsed = getattr(self, "_elapsed_ms", 0.0)
        return [f"processing job {self.job_id}", "starting to download data",
                f"finished downloading data after {elapsed:.6f}ms", "beginning to run user code"]


def advance_unfinished(services, kinds, advance: Callable, logger: logging.Logger) -> None:
    """Call `advance(session, job)` for every unfinished job of these kinds, each in its own short
    transaction; a job that fails to advance is logged and does not hold up the others."""
    from sqlalchemy import select

    from kaos_backend.models import Job
    with services.db.session_scope() as session:
        job_ids = list(session.scalars(select(Job.id).where(Job.kind.in_(list(kinds)), Job.finished_at.is_(None))))
    for job_id in job_ids:
        try:
            with services.db.session_scope() as session:
                job = session.get(Job, job_id)
                if job is not None and job.finished_at is None:
                    advance(session, job)
        except Exception:
            logger.exception("Job %s could not advance", job_id)


def single_workload_exit(job, config, job_log: JobLog, what: str, start: Callable[[], None]) -> Optional[int]:
    """The shared life of a job that runs one workload (a build, an ingestion): kill it on request, start it,
    notice that it vanished. Returns its exit code once it has one and nothing else decided its fate."""
    executor = reattached(config, job.executor_state)
    if job.desired == "kill":
        if executor is not None:
            executor.stop()
        if job.started_at is None:
            job.started_at = now()
        finish(job, JobState.JOB_KILLED, f"kaos: {what} killed on request", job_log)
        return None
    if job.state == JobState.JOB_STARTING.value:
        start()
        return None
    code = executor.poll() if executor is not None else VANISHED
    if code == VANISHED:
        finish(job, JobState.JOB_FAILURE, vanished_reason(what), job_log)
        return None
    return code


def reattached(config, state: Optional[dict]) -> Optional[Executor]:
    if not state:
        return None
    executor = make_executor(config)
    executor.load_state(state)
    return executor


def finish(job, state: JobState, reason: Optional[str] = None, log: Optional[JobLog] = None) -> None:
    """Mark a job (or partition) terminal; a reason also goes to its log, so the user sees why."""
    job.state = state.value
    job.finished_at = now()
    if reason:
        if hasattr(job, "reason"):
            job.reason = reason[:MAX_REASON]
        if log is not None:
            log.append(reason)


def exit_state(code: int) -> JobState:
    return JobState.JOB_SUCCESS if code == 0 else JobState.JOB_FAILURE


def vanished_reason(what: str) -> str:
    return (f"kaos: the {what} process disappeared without an exit code "
            "(the machine or the backend restarted while it ran); the job is marked failed")


__all__ = ["VANISHED", "Preamble", "advance_unfinished", "reattached", "finish", "exit_state", "vanished_reason", "now"]
