"""Speed target: with 10,000 finished train jobs in one workspace, `GET /api/train/<ws>` answers in under 200 ms
(median of 21 after 2 warmups). The median of `GET /api/health` over the same keep-alive session, in the same
run, is printed beside it for context.

The workspace is made through the API; the jobs (each train job with one partition, plus build jobs) are bulk
inserted with SQLAlchemy while the backend is stopped. After the HTTP figures, the same listing is timed in
this process piece by piece (the SQL queries, the row formatting, the JSON), and profiled when it misses."""
import cProfile
import io
import json
import pstats
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from _backend import BackendApi, BenchFailure, backend_log_problems, exit_on_sigterm, running_backend, \
    temporary_directory

WORKSPACE = "bench-scale"
TRAIN_JOBS = 10_000
BUILD_JOBS = 500
FAILED_EVERY = 50  # every 50th train job (and its partition) failed, the rest succeeded
RUNS, WARMUP = 21, 2
TARGET_SECONDS = 0.200


def insert_jobs(data_dir: Path) -> float:
    """Bulk insert the jobs and partitions straight into the backend's database; the seconds it took."""
    from kaos_model.ids import new_job_id
    from sqlalchemy import insert, select

    from kaos_backend.db import Database
    from kaos_backend.models import Job, Partition, Workspace

    start = time.perf_counter()
    db = Database(f"sqlite:///{data_dir / 'kaos.db'}", create_tables=False)
    try:
        with db.session_scope() as session:
            workspace_id = session.scalar(select(Workspace.id).where(Workspace.name == WORKSPACE))
            if workspace_id is None:
                raise BenchFailure(f"workspace {WORKSPACE} is not in the database")
            base = datetime.now(timezone.utc) - timedelta(minutes=TRAIN_JOBS + BUILD_JOBS + 10)
            jobs, partitions = [], []
            for index in range(BUILD_JOBS):
                created = base + timedelta(minutes=index)
                jobs.append(dict(id=new_job_id(), workspace_id=workspace_id, kind="build-train", state="JOB_SUCCESS",
                                 desired="run", user="bench", created_at=created,
                                 started_at=created + timedelta(seconds=1),
                                 finished_at=created + timedelta(seconds=20), parallelism=1,
                                 image=f"/envs/{index:016x}"))
            for index in range(TRAIN_JOBS):
                created = base + timedelta(minutes=BUILD_JOBS + index)
                state = "JOB_FAILURE" if index % FAILED_EVERY == 0 else "JOB_SUCCESS"
                branch = f"{index % 0xfffff:05x}_9fd9d"
                job_id = new_job_id()
                jobs.append(dict(id=job_id, workspace_id=workspace_id, kind="train", state=state, desired="run",
                                 user="bench", created_at=created, started_at=created + timedelta(seconds=1),
                                 finished_at=created + timedelta(seconds=31), branch=branch, parallelism=1))
                partitions.append(dict(job_id=job_id, index=0, model_id=f"{branch}:{index:06x}", state=state,
                                       started_at=created + timedelta(seconds=1),
                                       finished_at=created + timedelta(seconds=31),
                                       exit_code=1 if state == "JOB_FAILURE" else 0,
                                       has_model=state == "JOB_SUCCESS",
                                       metrics=None if state == "JOB_FAILURE" else {"accuracy_validation": 0.9}))
            session.execute(insert(Job), jobs)
            session.execute(insert(Partition), partitions)
    finally:
        db.dispose()
    return time.perf_counter() - start


def median_request(api: BackendApi, path: str) -> float:
    """Median seconds until the whole answer is received (not decoded) over the keep-alive session."""
    times = []
    for index in range(WARMUP + RUNS):
        start = time.perf_counter()
        response = api.session.get(api.url + path, timeout=60)
        response.content
        elapsed = time.perf_counter() - start
        if not response.ok:
            raise BenchFailure(f"GET /api/{path} -> HTTP {response.status_code}: {response.text[:500]}")
        if index >= WARMUP:
            times.append(elapsed)
    return statistics.median(times)


def breakdown(data_dir: Path, profile: bool) -> None:
    """Time the pieces of the listing in this process, against the same database; profile it on request."""
    from kaos_backend.config import Config
    from kaos_backend.db import Database
    from kaos_backend.layout import DataLayout
    from kaos_backend.models import Job
    from kaos_backend.services.jobs import JobService
    from sqlalchemy import select

    db = Database(f"sqlite:///{data_dir / 'kaos.db'}", create_tables=False)
    try:
        config = Config.from_env({}, data_dir=data_dir, database_url=f"sqlite:///{data_dir / 'kaos.db'}")
        service = JobService(db, DataLayout(data_dir), config)
        with db.session_scope() as session:
            workspace_id = _workspace_id(session)
        jobs_query = (select(Job.id, Job.state, Job.created_at, Job.started_at, Job.finished_at)
                      .where(Job.workspace_id == workspace_id, Job.kind == "train")
                      .order_by(Job.created_at.desc(), Job.id.desc()))  # the jobs part of JobService.listing

        def listing():
            return {kind: service.listing(WORKSPACE, kind) for kind in ("train", "build-train", "ingestion")}

        def pieces():
            with db.session_scope() as session:
                session.execute(jobs_query).all()
            query = counts = time.perf_counter()
            result = listing()
            whole = time.perf_counter()
            json.dumps({"response": result})
            return query, counts, whole, time.perf_counter()

        listing()  # warm the page cache and SQLAlchemy's statement cache
        samples = []
        for _ in range(5):
            start = time.perf_counter()
            query, counts, whole, dumped = pieces()
            samples.append((query - start, counts - query, whole - counts, dumped - whole))
        names = ("train jobs query (SQLAlchemy, rows fetched)", "(partition counts: inside the listing query)",
                 "JobService.listing x3 (train, build-train, ingestion)", "json.dumps of the answer")
        print("in-process breakdown (median of 5):")
        for position, name in enumerate(names):
            print(f"  {name}: {statistics.median(sample[position] for sample in samples) * 1000:.1f} ms")
        if profile:
            profiler = cProfile.Profile()
            profiler.enable()
            listing()
            profiler.disable()
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(15)
            print(text.getvalue())
    finally:
        db.dispose()


def _workspace_id(session) -> int:
    from sqlalchemy import select

    from kaos_backend.models import Workspace
    return session.scalar(select(Workspace.id).where(Workspace.name == WORKSPACE))


def main() -> int:
    exit_on_sigterm()
    with temporary_directory("kaos-bench-scale-") as tmp:
        data_dir = Path(tmp) / "data"
        with running_backend(data_dir) as backend:
            BackendApi(backend).create_workspace(WORKSPACE)
        seconds = insert_jobs(data_dir)
        print(f"inserted {TRAIN_JOBS} train jobs (+{TRAIN_JOBS} partitions) and {BUILD_JOBS} build jobs "
              f"in {seconds:.1f} s")
        with running_backend(data_dir) as backend:
            api = BackendApi(backend)
            listing = api.train_list(WORKSPACE)
            counts = {key: len(value) for key, value in listing.items()}
            if counts.get("training") != TRAIN_JOBS or counts.get("building") != BUILD_JOBS:
                raise BenchFailure(f"the listing holds {counts}, expected {TRAIN_JOBS} training and "
                                   f"{BUILD_JOBS} building")
            size = len(json.dumps(listing))
            baseline = median_request(api, "health")
            measured = median_request(api, f"train/{WORKSPACE}")
            problems = backend_log_problems(backend)
        print(f"GET /api/train/{WORKSPACE} ({TRAIN_JOBS} training + {BUILD_JOBS} building, ~{size / 1e6:.1f} MB JSON): "
              f"median {measured * 1000:.1f} ms vs GET /api/health median {baseline * 1000:.1f} ms "
              f"-> ratio {measured / baseline:.1f}")
        for line in problems:
            print(f"backend log: {line}")
        met = measured < TARGET_SECONDS
        breakdown(data_dir, profile=not met)
        print(f"median <{TARGET_SECONDS * 1000:.0f} ms: {'OK' if met else 'MISSED'}")
        return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
