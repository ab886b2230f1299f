"""Shared pieces of the backend benchmarks: a real backend on a temporary data directory, its REST API, bundle
zips, waiting for jobs, and removing every process the backend started, even when a benchmark fails."""
import contextlib
import os
import signal
import sqlite3
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Dict, Iterator, Optional, Set, Tuple

import requests

from _timing import REPO

sys.path.insert(0, str(REPO))
from tests.support.backend import BackendProcess  # noqa: E402

MNIST = REPO / "templates" / "mnist"
TERMINAL = {"JOB_SUCCESS", "JOB_FAILURE", "JOB_KILLED"}
POLL_SECONDS = 0.02


class BenchFailure(Exception):
    """The platform did not do what the benchmark needs (a job failed, timed out, a request was refused)."""


def exit_on_sigterm() -> None:
    """SIGTERM/SIGHUP become SystemExit, so the `finally` blocks that clean up still run."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda number, _frame: sys.exit(128 + number))


class BackendApi:
    """The few REST routes the benchmarks use, over one keep-alive session."""

    def __init__(self, backend: BackendProcess):
        self.url = backend.url
        self.session = requests.Session()
        self.session.headers["X-Token"] = backend.token

    def call(self, method: str, path: str, **kwargs):
        response = self.session.request(method, self.url + path, timeout=kwargs.pop("timeout", 120), **kwargs)
        if not response.ok:
            raise BenchFailure(f"{method} /api/{path} -> HTTP {response.status_code}: {response.text[:500]}")
        return response.json()

    def create_workspace(self, name: str) -> None:
        self.call("POST", f"workspace/{name}")

    def post_zip(self, path: str, zip_path: Path) -> dict:
        with open(zip_path, "rb") as body:
            return self.call("POST", path, data=body, headers={"Content-Type": "application/zip"})

    def job(self, workspace: str, job_id: str) -> dict:
        return self.call("GET", f"job/{workspace}/{job_id}")["response"]

    def train_list(self, workspace: str) -> dict:
        return self.call("GET", f"train/{workspace}")["response"]

    def job_log_tail(self, workspace: str, job_id: str, characters: int = 2000) -> str:
        """The end of a train or build job's own log, for failure messages."""
        try:
            return self.call("GET", f"train/{workspace}/{job_id}/logs")[-characters:]
        except BenchFailure as error:
            return str(error)

    def wait_for_job(self, workspace: str, job_id: str, timeout: float) -> Tuple[str, float]:
        """Poll `GET /job/<ws>/<id>` until terminal: (state, time.perf_counter() when it was first seen)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(workspace, job_id)
            if job["state"] in TERMINAL:
                return job["state"], time.perf_counter()
            time.sleep(POLL_SECONDS)
        raise BenchFailure(f"job {job_id} not finished after {timeout:.0f} s (last state {job['state']})")

    def wait_for_new_training(self, workspace: str, known: Set[str], timeout: float) -> Tuple[str, str, float]:
        """Poll `GET /train/<ws>` until a train job not in `known` is terminal: (job id, state, perf_counter)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for job in self.train_list(workspace)["training"]:
                if job["job_id"] not in known and job["state"] in TERMINAL:
                    return job["job_id"], job["state"], time.perf_counter()
            time.sleep(POLL_SECONDS)
        raise BenchFailure(f"no new train job finished in workspace {workspace} after {timeout:.0f} s")


@contextlib.contextmanager
def running_backend(data_dir: Path, token: str = "bench-token",
                    env: Optional[Dict[str, str]] = None) -> Iterator[BackendProcess]:
    """A backend on `data_dir` (with `env` added to this process's environment); afterwards it is stopped and so
    is every workload it left running."""
    backend = BackendProcess(data_dir, token=token, env=env)
    try:
        backend.start()
        yield backend
    except BaseException:
        lines = [line for line in backend.log().splitlines() if "gunicorn.access" not in line]
        tail = "\n".join(lines[-40:])
        if tail:
            print(f"--- last lines of the backend log ({backend.log_path}) ---\n{tail}", file=sys.stderr)
        raise
    finally:
        backend.stop()
        kill_leftovers(data_dir)


def kill_leftovers(data_dir: Path) -> None:
    """SIGKILL every process whose command line names `data_dir`: the job runners, pip, `./train`... that run in
    sessions of their own and so outlive the backend."""
    marker = str(data_dir).encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                if marker not in handle.read():
                    continue
            os.kill(int(entry), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass


def backend_log_problems(backend: BackendProcess) -> list:
    """Log lines of the backend that speak of errors or tracebacks."""
    words = ("ERROR", "Traceback", "Exception", "CRITICAL")
    return [line for line in backend.log().splitlines() if any(word in line for word in words)]


def zip_bundle(src_dir: Path, dest_zip: Path) -> Path:
    """The CLI's own zip of a directory's contents (`kaos_cli.bundles.zip_directory`), without its progress bar."""
    from kaos_cli.bundles import zip_directory
    return zip_directory(src_dir, dest_zip, progress=False)


def job_times(data_dir: Path, job_id: str) -> Dict[str, Optional[datetime]]:
    """created/started/finished of a job, straight from the SQLite file (the API rounds them to seconds)."""
    connection = sqlite3.connect(f"file:{data_dir / 'kaos.db'}?mode=ro", uri=True)
    try:
        row = connection.execute("SELECT created_at, started_at, finished_at FROM jobs WHERE id = ?",
                                 (job_id,)).fetchone()
    finally:
        connection.close()
    if row is None:
        return {}
    return {name: datetime.fromisoformat(value) if value else None
            for name, value in zip(("created", "started", "finished"), row)}


def endpoint_port(data_dir: Path, name: str) -> Optional[int]:
    """The port an endpoint's own server listens on (127.0.0.1), straight from the SQLite file."""
    connection = sqlite3.connect(f"file:{data_dir / 'kaos.db'}?mode=ro", uri=True)
    try:
        row = connection.execute("SELECT port FROM endpoints WHERE name = ?", (name,)).fetchone()
    finally:
        connection.close()
    return row[0] if row else None


def job_phases(data_dir: Path, job_id: str) -> str:
    """`queued 0.21 s, ran 0.49 s` from the job's own timestamps."""
    times = job_times(data_dir, job_id)
    if not times or not times.get("started") or not times.get("finished"):
        return "timestamps unavailable"
    queued = (times["started"] - times["created"]).total_seconds()
    ran = (times["finished"] - times["started"]).total_seconds()
    return f"queued {queued:.2f} s, started->finished {ran:.2f} s"


def temporary_directory(prefix: str) -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix=prefix)
