"""Long lists for the paging tests: jobs and endpoints bulk inserted into a backend's database (SQLite or
PostgreSQL), with the times the test chooses, and the order the API must list them in."""
from datetime import datetime, timedelta, timezone
from typing import List, Optional

from kaos_model.ids import new_hex6, new_job_id

START = datetime(2024, 1, 1, tzinfo=timezone.utc)


def connect(database_url: str):
    """The backend's database, without migrating it (the backend did); dispose() it when done."""
    from kaos_backend.db import Database
    return Database(database_url, create_tables=False)


def workspace_id(session, name: str) -> int:
    from sqlalchemy import select

    from kaos_backend.models import Workspace
    found = session.scalar(select(Workspace.id).where(Workspace.name == name))
    assert found is not None, f"workspace {name} does not exist"
    return found


def seed_jobs(database_url: str, workspace: str, kind: str, count: int, start: datetime = START,
              step: timedelta = timedelta(seconds=1), state: str = "JOB_SUCCESS") -> List[str]:
    """`count` finished jobs of `kind` created `step` apart from `start` (a zero step: all at the same time);
    a train job has one partition. Their ids, newest first as the API lists them (`created_at`, then id)."""
    from sqlalchemy import insert

    from kaos_backend.models import Job, Partition

    database = connect(database_url)
    try:
        with database.session_scope() as session:
            owner = workspace_id(session, workspace)
            jobs, partitions = [], []
            for index in range(count):
                created = start + step * index
                job_id = new_job_id()
                jobs.append(dict(id=job_id, workspace_id=owner, kind=kind, state=state, desired="run", user="seed",
                                 created_at=created, started_at=created, finished_at=created + timedelta(seconds=3),
                                 parallelism=1))
                if kind == "train":
                    partitions.append(dict(job_id=job_id, index=0, model_id=f"{job_id}:{new_hex6()}", state=state,
                                           has_model=state == "JOB_SUCCESS"))
            if jobs:
                session.execute(insert(Job), jobs)
            if partitions:
                session.execute(insert(Partition), partitions)
    finally:
        database.dispose()
    return [job["id"] for job in sorted(jobs, key=lambda job: (job["created_at"], job["id"]), reverse=True)]


def seed_endpoints(database_url: str, workspace: str, count: int, start: datetime = START,
                   step: timedelta = timedelta(seconds=1), kind: str = "serve") -> List[str]:
    """`count` endpoints (or with `kind` "notebook", notebooks) that failed for good (the scheduler leaves them
    alone), created `step` apart. Their names, newest first as the API lists them (`created_at`, then name)."""
    from sqlalchemy import insert

    from kaos_backend.models import Endpoint, Notebook

    database = connect(database_url)
    try:
        with database.session_scope() as session:
            owner = workspace_id(session, workspace)
            extra = {"token_sha256": "0" * 64} if kind == "notebook" else {}
            rows = [dict(name=f"{kind}-{workspace}-{new_hex6()}", workspace_id=owner, user="seed",
                         state="PIPELINE_FAILURE", desired="run", failures=5, created_at=start + step * index, **extra)
                    for index in range(count)]
            if rows:
                session.execute(insert(Notebook if kind == "notebook" else Endpoint), rows)
    finally:
        database.dispose()
    return [row["name"] for row in sorted(rows, key=lambda row: (row["created_at"], row["name"]), reverse=True)]


def seed_workspaces(database_url: str, names: List[str], user: Optional[str] = "seed") -> None:
    from sqlalchemy import insert

    from kaos_backend.models import Workspace

    database = connect(database_url)
    try:
        with database.session_scope() as session:
            session.execute(insert(Workspace), [dict(name=name, user=user) for name in names])
    finally:
        database.dispose()
