"""Jobs as the API shows them: lookup within a workspace, listing rows, state, kill requests, logs."""
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Iterator, List, Optional, Tuple

from kaos_model import JobState
from kaos_model.wire import JobRecord, SubmissionInfo
from sqlalchemy import and_, case, func, select

from kaos_backend.db import Database
from kaos_backend.errors import JobNotFound, JobNotRunning
from kaos_backend.executors import log_of
from kaos_backend.executors.base import job_log_name
from kaos_backend.layout import DataLayout
from kaos_backend.models import Bundle, Job, Partition, as_utc
from kaos_backend.services.kill_wait import KILL_WAIT_SECONDS, KillPending, wait_for_kill
from kaos_backend.services.paging import Cursor, moment_key, newest_first_page, split_page
from kaos_backend.services.workspaces import find_workspace
from kaos_backend.wakeup import socket_name, wake

TERMINAL = {state.value for state in JobState if state.is_terminal}
FAILED = {JobState.JOB_FAILURE.value, JobState.JOB_KILLED.value}


@lru_cache(maxsize=4096)
def _local_offset(utc_hour: datetime) -> timedelta:
    """The local UTC offset at a given UTC hour (cached: a listing of many jobs looks up only a few hours)."""
    return utc_hour.astimezone().utcoffset()


def local_text(moment: Optional[datetime]) -> Optional[str]:
    """`YYYY-MM-DD HH:MM:SS` in the backend's local time (the original's format); naive values are UTC."""
    if moment is None:
        return None
    moment = as_utc(moment)
    offset = _local_offset(moment.replace(minute=0, second=0, microsecond=0))
    return (moment + offset).strftime("%Y-%m-%d %H:%M:%S")


def seconds_between(start: Optional[datetime], end: Optional[datetime]) -> int:
    if start is None:
        return 0
    if end is None:
        end = datetime.now(timezone.utc)
    if (start.tzinfo is None) != (end.tzinfo is None):
        start, end = as_utc(start), as_utc(end)
    return max(0, int((end - start).total_seconds()))


def _progress(done: int, total: int, failed: int) -> str:
    """A SubmissionInfo's `progress`: `Progress: <finished> / <total> (<percent>%)\n<failed> failed`."""
    percent = int(100 * done / total) if total else 0
    return f"Progress: {done} / {total} ({percent}%)\n{failed} failed"


def _with_partition_counts(jobs_query):
    """`jobs_query`'s rows (a page of jobs, in order) each followed by its partitions' count, finished count and
    failed count: the page is joined to the partitions' job_id index and grouped (a page without LIMIT is
    flattened into one join)."""
    page = jobs_query.subquery()
    finished = Partition.state.in_(sorted(TERMINAL))
    failed = Partition.state == JobState.JOB_FAILURE.value
    return (select(*page.c, func.count(Partition.id), func.sum(case((finished, 1), else_=0)),
                   func.sum(case((failed, 1), else_=0)))
            .outerjoin(Partition, Partition.job_id == page.c.id)
            .group_by(*page.c).order_by(page.c.created_at.desc(), page.c.id.desc()))


def find_job(session, workspace: str, job_id: str, kinds=None) -> Job:
    workspace_row = find_workspace(session, workspace)
    job = session.get(Job, job_id) if job_id else None
    if job is None or job.workspace_id != workspace_row.id or (kinds and job.kind not in kinds):
        raise JobNotFound(f"There is no job with id: {job_id}")
    return job


class JobService:
    def __init__(self, db: Database, layout: DataLayout, config):
        self.db = db
        self.layout = layout
        self.config = config

    def listing(self, workspace: str, kind: str) -> List[dict]:
        """SubmissionInfo dicts of every job of `kind`, newest first (the 1.x list)."""
        return self.page(workspace, kind)[0]

    def page(self, workspace: str, kind: str, limit: Optional[int] = None,
             after: Optional[Cursor] = None) -> Tuple[List[dict], Optional[Cursor]]:
        """SubmissionInfo dicts of the jobs of `kind`, newest first (`created_at`, then id): at most `limit`
        (None: all) after the cursor `after` (None: from the newest), read with LIMIT on the listing index.
        Returns the items and the cursor of the last one when more follow (else None). Raises
        WorkspaceNotFound, and BadRequest for a cursor that is not a job's."""
        columns = [Job.id, Job.state, Job.created_at, Job.started_at, Job.finished_at, Job.reason]
        with self.db.read_scope() as session:
            workspace_row = find_workspace(session, workspace)
            query = select(*columns).where(Job.workspace_id == workspace_row.id, Job.kind == kind)
            query = newest_first_page(query, Job.created_at, Job.id, limit, after)
            if kind == "train":
                query = _with_partition_counts(query)
            rows, next_cursor = split_page(session.execute(query).all(), limit,
                                           lambda row: (moment_key(row.created_at), row.id))
            entries = {}
            if kind == "ingestion" and rows:
                page_jobs = Job.id.in_([row.id for row in rows]) if limit is not None \
                    else and_(Job.workspace_id == workspace_row.id, Job.kind == kind)
                entries = dict(session.execute(
                    select(Job.id, Bundle.meta).join(Bundle, Bundle.id == Job.data_bundle_id).where(page_jobs)).all())
        listing = []
        for row in rows:
            job_id, state, created, started, finished_at, reason = row[:6]
            hyperopt = None
            if kind == "train":
                total, done, failed_count = row[6], int(row[7] or 0), int(row[8] or 0)
                progress = _progress(done, total, failed_count)
                hyperopt = "True" if total > 1 else "False"
            elif kind == "ingestion":
                progress = self._ingestion_progress(job_id, state, (entries.get(job_id) or {}).get("entries"))
            else:  # a build: one image
                progress = _progress(int(state in TERMINAL), 1, int(state in FAILED))
            listing.append(SubmissionInfo(
                job_id=job_id, state=state, started=local_text(started or created),
                duration=seconds_between(started, finished_at) if started else 0, progress=progress,
                hyperopt=hyperopt, extra={"reason": reason}).to_dict())
        return listing, next_cursor

    def _ingestion_progress(self, job_id: str, state: str, total: Optional[int]) -> str:
        """Files downloaded so far (one `downloaded …` record each in the ingestion's log) out of the manifest's."""
        done = total if state == JobState.JOB_SUCCESS.value and total else sum(
            "] downloaded " in line for line in self._log(job_id).logs())
        if not total:
            return f"Progress: {done} file" if done == 1 else f"Progress: {done} files"
        return f"Progress: {done} / {total} ({int(100 * done / total)}%)"

    def state(self, workspace: str, job_id: str) -> dict:
        with self.db.read_scope() as session:
            job = find_job(session, workspace, job_id)
            return JobRecord(job_id=job.id, kind=job.kind, state=job.state,
                             started=local_text(job.started_at or job.created_at),
                             finished=local_text(job.finished_at),
                             duration=seconds_between(job.started_at, job.finished_at) if job.started_at else 0,
                             reason=job.reason).to_dict()

    def kill(self, workspace: str, job_id: str, kinds=None, wait: float = KILL_WAIT_SECONDS) -> Optional[KillPending]:
        """Ask the scheduler to kill the job, and wait until it has: None; a KillPending when `wait` seconds passed
        first (the kill stays asked)."""
        with self.db.session_scope() as session:
            job = find_job(session, workspace, job_id, kinds)
            if job.state in TERMINAL:
                raise JobNotRunning(f"Job is not running, id: {job_id}")
            job.desired = "kill"
        wake(socket_name(self.layout.data_dir))
        return wait_for_kill(self.db, lambda session: session.get(Job, job_id).state in TERMINAL,
                             lambda session: session.get(Job, job_id).reason, f"job {job_id}", wait)

    def is_finished(self, job_id: str) -> bool:
        with self.db.read_scope() as session:
            job = session.get(Job, job_id)
            return job is None or job.state in TERMINAL

    def _log(self, job_id: str):
        """The job's log, read through the configured executor (the only way anything reads a log)."""
        return log_of(self.config, job_log_name(job_id))

    def log_text(self, workspace: str, job_id: str, kinds=None) -> str:
        with self.db.read_scope() as session:
            find_job(session, workspace, job_id, kinds)
        return "\n".join(self._log(job_id).logs())

    def log_to_follow(self, workspace: str, job_id: str, kinds=None) -> str:
        """The name of the job's log, once the job is known to be in `workspace` (JobNotFound otherwise)."""
        with self.db.read_scope() as session:
            find_job(session, workspace, job_id, kinds)
        return job_log_name(job_id)

    def follow_log(self, workspace: str, job_id: str, kinds=None) -> Iterator[str]:
        log = self.log_to_follow(workspace, job_id, kinds)
        return (line + "\n" for line in log_of(self.config, log).logs(follow=True,
                                                                       until=lambda: self.is_finished(job_id)))
