"""Data-manifest ingestion: the `executors/ingest.py` workload against a real HTTP server on 127.0.0.1, and the
rules around it (one ingestion per manifest bundle, trainings wait for it and read its files)."""
import functools
import hashlib
import http.server
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from kaos_model import JobState
from sqlalchemy import select

from kaos_backend.control.ingestions import IngestionController
from kaos_backend.executors.local_staging import INGEST
from kaos_backend.control.trainings import TrainController
from kaos_backend.models import Bundle, Job, TrainPipeline
from kaos_backend.services.uploads import body_from_bytes
from tests.backend.helpers import features_zip, source_zip

FILES = {"training/x.csv": b"1,2,3\n", "training/y.csv": b"4,5,6\n" * 1000, "validation/v.csv": b"7,8,9\n",
         "test/deep/er/t.csv": b""}


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def served(tmp_path):
    """A directory served by `http.server` on 127.0.0.1: (directory, base URL)."""
    root = tmp_path / "served"
    for name, content in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def write_manifest(path: Path, entries) -> Path:
    path.write_text("".join(json.dumps({"url": url, "path": target}) + "\n" for url, target in entries))
    return path


def ingest(manifest: Path, out: Path, *extra: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """The script as the executor runs it: by path, with the backend's interpreter, nothing on PYTHONPATH."""
    return subprocess.run([sys.executable, INGEST, "--manifest", str(manifest), "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=timeout, cwd=manifest.parent,
                          env={"PATH": "/usr/bin:/bin"})


def leftovers(out: Path):
    return sorted(path.name for path in out.parent.iterdir()) if out.parent.exists() else []


def test_ingest_downloads_every_file(tmp_path, served):
    _, base = served
    manifest = write_manifest(tmp_path / "data.mf", [(f"{base}/{name}", name) for name in FILES])
    out = tmp_path / "ingested" / "abc" / "manifest"
    result = ingest(manifest, out)
    assert result.returncode == 0, result
    for name, content in FILES.items():
        assert (out / name).read_bytes() == content
    for name, content in FILES.items():
        assert f"downloaded {name} ({len(content)} bytes)" in result.stdout
    assert result.stdout.rstrip().splitlines()[-1].startswith(f"ingested {len(FILES)} files ")
    assert leftovers(out) == ["manifest"]  # no partial directory beside it

    again = ingest(manifest, out)  # already there: nothing fetched again
    assert again.returncode == 0 and "already ingested" in again.stdout and "downloaded" not in again.stdout


def test_ingest_fails_on_a_missing_url_and_keeps_nothing(tmp_path, served):
    _, base = served
    missing = f"{base}/training/missing.csv"
    entries = [(f"{base}/{name}", name) for name in FILES] + [(missing, "training/missing.csv")]
    manifest = write_manifest(tmp_path / "data.mf", entries)
    out = tmp_path / "ingested" / "abc" / "manifest"
    result = ingest(manifest, out)
    assert result.returncode == 1, result
    failure = result.stdout.rstrip().splitlines()[-1]
    assert failure.startswith("ingestion failed: cannot download ") and missing in failure and "404" in failure
    assert not out.exists() and leftovers(out) == []
    assert "retrying" not in result.stdout  # a 404 is final: no retries


def test_ingest_fails_on_an_unreachable_server(tmp_path):
    from tests.support.backend import free_port
    url = f"http://127.0.0.1:{free_port()}/a.csv"  # nothing listens there
    manifest = write_manifest(tmp_path / "data.mf", [(url, "training/a.csv")])
    out = tmp_path / "out" / "manifest"
    started = time.monotonic()
    result = ingest(manifest, out, "--timeout", "5")
    assert result.returncode == 1, result
    assert url in result.stdout.splitlines()[-1] and "after 3 attempts" in result.stdout
    assert result.stdout.count("retrying") == 2
    assert time.monotonic() - started < 30
    assert not out.exists() and leftovers(out) == []


def test_ingest_retries_a_transient_server_error(tmp_path):
    calls = []

    class Flaky(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            calls.append(self.path)
            if len(calls) == 1:
                self.send_error(503)
                return
            body = b"finally\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/f.csv"
        manifest = write_manifest(tmp_path / "data.mf", [(url, "training/f.csv")])
        out = tmp_path / "out" / "manifest"
        result = ingest(manifest, out)
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 0, result
    assert "retrying" in result.stdout and "503" in result.stdout
    assert (out / "training/f.csv").read_bytes() == b"finally\n" and len(calls) == 2


@pytest.mark.parametrize("target", ["../escape.csv", "/abs.csv", "a/../../b.csv", "dir/"])
def test_ingest_rechecks_paths(tmp_path, served, target):
    _, base = served
    manifest = write_manifest(tmp_path / "data.mf", [(f"{base}/training/x.csv", target)])
    out = tmp_path / "inner" / "out" / "manifest"
    result = ingest(manifest, out)
    assert result.returncode == 1 and "is not a safe relative path" in result.stdout, result
    assert not out.exists() and not (tmp_path / "escape.csv").exists() and not (tmp_path / "inner" / "b.csv").exists()


def test_ingest_refuses_a_file_that_is_also_a_directory(tmp_path, served):
    _, base = served
    manifest = write_manifest(tmp_path / "data.mf", [(f"{base}/training/x.csv", "a"),
                                                      (f"{base}/training/y.csv", "a/b.csv")])
    result = ingest(manifest, tmp_path / "out" / "manifest")
    assert result.returncode == 1 and "is a file" in result.stdout, result


@pytest.mark.parametrize("path", ["a.csv", "training/a.csv", "./a/./b", "a//b", "", " ", "/a", "C:/a", "a\\b",
                                  "a/../b", "..", "a/", ".", "./", "a\x00b", "..a/b..", "~/a"])
def test_the_script_checks_paths_as_the_backend_does(path):
    from kaos_backend import manifests
    from kaos_backend.executors import ingest as script
    assert bool(script.path_problem(path)) == bool(manifests.path_problem(path))


# -- the rules around it ------------------------------------------------------------------------------------------
def manifest_bytes(base: str, names=tuple(FILES)) -> bytes:
    return "".join(json.dumps({"url": f"{base}/{name}", "path": name}) + "\n" for name in names).encode()


def ingestions(services):
    with services.db.session_scope() as session:
        return [(job.id, job.state) for job in session.scalars(
            select(Job).where(Job.kind == "ingestion").order_by(Job.created_at))]


def set_state(services, job_id, state):
    with services.db.session_scope() as session:
        session.get(Job, job_id).state = state.value


def test_manifest_becomes_the_data_and_starts_one_ingestion(services):
    services.workspaces.create("ws")
    services.train.submit_params("ws", body_from_bytes(b'{"a": [1, 2]}'))
    data = manifest_bytes("http://127.0.0.1:9")
    result = services.train.submit_manifest("ws", body_from_bytes(data))
    assert result == {"glob_name": f"manifest:{hashlib.sha256(data).hexdigest()[:5]}"}
    inspect = services.train.inspect("ws")
    assert inspect["data_glob"] == f"/{result['glob_name']}" and inspect["hyper_glob"] == "/params.null"
    with services.db.session_scope() as session:
        bundle = session.scalar(select(Bundle).where(Bundle.kind == "manifest"))
        assert bundle.hash5 == hashlib.sha256(data).hexdigest()[:5]  # as in its glob, like a features bundle
        job = session.scalar(select(Job).where(Job.kind == "ingestion"))
        assert job.data_bundle_id == bundle.id and job.state == "JOB_STARTING"
    first, = ingestions(services)

    services.train.submit_manifest("ws", body_from_bytes(data))  # the same manifest again: the same job
    assert ingestions(services) == [first]
    set_state(services, first[0], JobState.JOB_SUCCESS)
    services.train.submit_manifest("ws", body_from_bytes(data))  # ingested already: nothing new
    assert len(ingestions(services)) == 1

    set_state(services, first[0], JobState.JOB_FAILURE)  # a failed (or killed) one is retried on re-upload
    services.train.submit_manifest("ws", body_from_bytes(data))
    assert [state for _, state in ingestions(services)] == ["JOB_FAILURE", "JOB_STARTING"]

    services.train.submit_features("ws", body_from_bytes(features_zip()))  # features replace the manifest
    assert services.train.inspect("ws")["data_glob"].startswith("/features:")
    assert len(ingestions(services)) == 2


def run_until(controller, services, job_id, timeout=60.0) -> Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        controller.tick()
        with services.db.session_scope() as session:
            job = session.get(Job, job_id)
            if job.finished_at is not None:
                session.expunge(job)
                return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def test_controller_ingests_and_training_waits_for_it(services, served):
    _, base = served
    services.workspaces.create("ws")
    source = services.train.submit_source("ws", body_from_bytes(source_zip()))
    data = manifest_bytes(base)
    services.train.submit_manifest("ws", body_from_bytes(data))
    (ingestion_id, _), = ingestions(services)
    set_state(services, source["job_id"], JobState.JOB_SUCCESS)  # pretend the image is built

    trainings = TrainController(services)
    trainings.schedule()
    with services.db.session_scope() as session:
        assert session.scalar(select(Job).where(Job.kind == "train")) is None  # waits for the ingestion

    job = run_until(IngestionController(services), services, ingestion_id)
    assert job.state == "JOB_SUCCESS", services.jobs.log_text("ws", ingestion_id)
    with services.db.session_scope() as session:
        digest = session.scalar(select(Bundle.blob_digest).where(Bundle.kind == "manifest"))
    out = services.layout.ingested_dir(digest)
    assert out == services.config.data_dir / "ingested" / digest / "manifest"
    assert all((out / name).read_bytes() == content for name, content in FILES.items())
    log = services.jobs.log_text("ws", ingestion_id)
    assert f"processing job {ingestion_id}" in log and "downloaded training/x.csv (6 bytes)" in log

    trainings.schedule()
    with services.db.session_scope() as session:
        train = session.scalar(select(Job).where(Job.kind == "train"))
        source_hash5 = session.get(Bundle, session.get(TrainPipeline, train.workspace_id).source_bundle_id).hash5
        assert train.branch == f"{source_hash5}_{hashlib.sha256(data).hexdigest()[:5]}"

    # another workspace with the same manifest: its ingestion finds the files already there
    services.workspaces.create("other")
    services.train.submit_manifest("other", body_from_bytes(data))
    other_id = [job_id for job_id, state in ingestions(services) if state == "JOB_STARTING"][0]
    assert run_until(IngestionController(services), services, other_id).state == "JOB_SUCCESS"
    assert "already ingested" in services.jobs.log_text("other", other_id)


def test_controller_failure_names_the_url_and_no_training_starts(services, served):
    _, base = served
    services.workspaces.create("ws")
    source = services.train.submit_source("ws", body_from_bytes(source_zip()))
    services.train.submit_manifest("ws", body_from_bytes(manifest_bytes(base, ("training/x.csv", "nope.csv"))))
    (ingestion_id, _), = ingestions(services)
    set_state(services, source["job_id"], JobState.JOB_SUCCESS)

    job = run_until(IngestionController(services), services, ingestion_id)
    assert job.state == "JOB_FAILURE"
    assert f"{base}/nope.csv" in job.reason and f"{base}/nope.csv" in services.jobs.log_text("ws", ingestion_id)
    TrainController(services).schedule()
    with services.db.session_scope() as session:
        assert session.scalar(select(Job).where(Job.kind == "train")) is None
    assert list((services.config.data_dir / "ingested").glob("*/*")) == []  # no files, no partial directory


def test_kill_an_ingestion(services):
    services.workspaces.create("ws")
    services.train.submit_manifest("ws", body_from_bytes(manifest_bytes("http://127.0.0.1:9")))
    (ingestion_id, _), = ingestions(services)
    with services.db.session_scope() as session:
        session.get(Job, ingestion_id).desired = "kill"
    job = run_until(IngestionController(services), services, ingestion_id)
    assert job.state == "JOB_KILLED"


def test_kill_a_running_ingestion_leaves_nothing(services, tmp_path):
    release = threading.Event()

    class Slow(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "1000000")
            self.end_headers()
            self.wfile.write(b"x" * 1000)  # a first chunk, then nothing until the test ends
            self.wfile.flush()
            release.wait(60)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        services.workspaces.create("ws")
        base = f"http://127.0.0.1:{server.server_address[1]}"
        services.train.submit_manifest("ws", body_from_bytes(manifest_bytes(base, ("a.csv", "b.csv"))))
        (ingestion_id, _), = ingestions(services)
        controller = IngestionController(services)
        controller.tick()
        with services.db.session_scope() as session:
            job = session.get(Job, ingestion_id)
            assert job.state == "JOB_RUNNING"
            manifest = session.get(Bundle, job.data_bundle_id)
            staging_parent = services.layout.ingested_dir(manifest.blob_digest).parent
        deadline = time.monotonic() + 30
        while not list(staging_parent.glob(".manifest.partial-*/*.csv")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list(staging_parent.glob(".manifest.partial-*/*.csv"))  # the downloads are under way
        with services.db.session_scope() as session:
            session.get(Job, ingestion_id).desired = "kill"
        started = time.monotonic()
        job = run_until(controller, services, ingestion_id)
        assert job.state == "JOB_KILLED" and time.monotonic() - started < 8  # ended by SIGTERM, not SIGKILL
        assert list(staging_parent.iterdir()) == []
    finally:
        release.set()
        server.shutdown()
        server.server_close()
