"""The controllers' two habits: no file I/O and no process start inside a write transaction (a probe takes SQLite's
write lock from another connection, without waiting, at every such moment), and a job whose controller keeps
raising is retried with backoff, logged once per try and then failed with the error as its reason."""
import logging
import sqlite3
import time

import pytest
from kaos_model import JobState, PipelineState

from kaos_backend.config import Config, platform_id
from kaos_backend.executors.containment import stop_platform
from kaos_backend.control.builds import BuildController
from kaos_backend.control.common import Retries
from kaos_backend.control.endpoints import EndpointController
from kaos_backend.control.trainings import TrainController
from kaos_backend.executors import log_of
from kaos_backend.executors.base import job_log_name
from kaos_backend.executors.local import LocalExecutor
from kaos_backend.layout import DataLayout
from kaos_backend.models import Endpoint, Job, Partition
from kaos_backend.services import Services
from kaos_backend.services.uploads import body_from_bytes
from tests.backend.helpers import features_zip, zip_bytes

FAILURE = PipelineState.PIPELINE_FAILURE.value
TRAIN = "#!/usr/bin/env python3\nimport os, sys\nos.makedirs(sys.argv[1] + '/model')\nprint('trained')\n"
SERVE = """#!/usr/bin/env python3
import http.server, os
class Ping(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == '/ping' else 404)
        self.end_headers()
http.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), Ping).serve_forever()
"""


def _source(kind: str) -> bytes:
    """A tiny source bundle (no requirements); the controllers make `train` and `serve` executable."""
    files = {"train": TRAIN, "requirements.txt": ""} if kind == "train" else \
        {"serve": SERVE, "web-requirements.txt": "", "requirements.txt": ""}
    entries = {"tiny/Dockerfile": "FROM python:3.11-slim\n", "tiny/model/__init__.py": ""}
    entries.update({f"tiny/model/{name}": text for name, text in files.items()})
    return zip_bytes(entries)


@pytest.fixture
def sqlite_services(tmp_path):
    config = Config.from_env({}, data_dir=tmp_path / "data", database_url=f"sqlite:///{tmp_path / 'kaos.db'}")
    services = Services(config)
    yield services
    services.dispose()
    stop_platform(platform_id(tmp_path / "data"))  # what a failed test left running


def _ticks(controller, done, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "the controller did not get there"
        controller.tick()
        time.sleep(0.05)


def _job(services, job_id) -> Job:
    with services.db.read_scope() as session:
        return session.get(Job, job_id)


def test_no_write_transaction_is_open_during_file_io_or_process_starts(sqlite_services, tmp_path, monkeypatch):
    services = sqlite_services
    probes = []

    def probe(what):
        connection = sqlite3.connect(str(tmp_path / "kaos.db"), timeout=0, isolation_level=None)
        try:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("ROLLBACK")
            probes.append((what, "free"))
        except sqlite3.OperationalError as error:
            probes.append((what, str(error)))
        finally:
            connection.close()

    def probing(name, original):
        def wrapper(*args, **kwargs):
            probe(name)
            return original(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(DataLayout, "extracted", probing("extract", DataLayout.extracted))
    monkeypatch.setattr(LocalExecutor, "_launch", probing("start", LocalExecutor._launch))
    monkeypatch.setattr(LocalExecutor, "stop", probing("stop", LocalExecutor.stop))
    monkeypatch.setattr(LocalExecutor, "poll", probing("poll", LocalExecutor.poll))

    services.workspaces.create("ws")
    build_id = services.train.submit_source("ws", body_from_bytes(_source("train")))["job_id"]
    services.train.submit_features("ws", body_from_bytes(features_zip()))
    builds, trainings, endpoints = BuildController(services), TrainController(services), EndpointController(services)
    _ticks(builds, lambda: _job(services, build_id).finished_at is not None)
    assert _job(services, build_id).state == JobState.JOB_SUCCESS.value
    _ticks(trainings, lambda: bool(services.jobs.listing("ws", "train")) and
           services.jobs.listing("ws", "train")[0]["state"] in ("JOB_SUCCESS", "JOB_FAILURE"))
    assert services.jobs.listing("ws", "train")[0]["state"] == "JOB_SUCCESS"

    deployed = services.inference.deploy("ws", None, body_from_bytes(_source("serve")))
    name = deployed["endpoint"]
    serve_build = deployed["job_id"]
    if serve_build:
        _ticks(builds, lambda: _job(services, serve_build).finished_at is not None)
    _ticks(endpoints, lambda: services.inference.listing("ws", "h")[0]["state"] == "PIPELINE_RUNNING")
    with services.db.session_scope() as session:
        endpoint = session.get(Endpoint, name)
        endpoint.desired = "kill"
        # the controllers' facts have columns of their own: a row's executor state is the executor's alone
        assert endpoint.started_at is not None and endpoint.host and endpoint.port
        states = [endpoint.executor_state] + [row.executor_state for row in session.query(Partition)] + \
            [row.executor_state for row in session.query(Job) if row.executor_state]
        assert len(states) >= 3 and not [state for state in states if {"started", "output_dir"} & set(state)]
    _ticks(endpoints, lambda: _endpoint_gone(services, name))

    kinds = {what for what, _ in probes}
    assert {"extract", "start", "poll", "stop"} <= kinds, probes
    assert [probe for probe in probes if probe[1] != "free"] == []


def _endpoint_gone(services, name) -> bool:
    with services.db.read_scope() as session:
        return session.get(Endpoint, name) is None


def _failing(monkeypatch, cls, method):
    calls = []

    def boom(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("boom")
    monkeypatch.setattr(cls, method, boom)
    return calls


def test_a_training_whose_controller_keeps_raising_fails_with_the_error(sqlite_services, monkeypatch, caplog):
    services = sqlite_services
    services.workspaces.create("ws")
    build_id = services.train.submit_source("ws", body_from_bytes(_source("train")))["job_id"]
    services.train.submit_features("ws", body_from_bytes(features_zip()))
    _ticks(BuildController(services), lambda: _job(services, build_id).finished_at is not None)
    calls = _failing(monkeypatch, TrainController, "_start")
    controller = TrainController(services)
    controller.retries = Retries(delays=(0.0, 0.0))
    with caplog.at_level(logging.ERROR, logger="kaos_backend.control.trainings"):
        _ticks(controller, lambda: services.jobs.listing("ws", "train")
               and services.jobs.listing("ws", "train")[0]["state"] == "JOB_FAILURE")
        for _ in range(5):  # a failed job is not advanced again
            controller.tick()
    job = services.jobs.listing("ws", "train")[0]
    assert len(calls) == 3
    assert job["reason"] == "kaos: the scheduler could not advance this train job: RuntimeError: boom"
    assert [record.message.count("Traceback") for record in caplog.records] == [1, 1, 1]
    assert "try 3 of 3, giving up" in caplog.records[-1].message
    log = list(log_of(services.config, job_log_name(job["job_id"])).logs())
    assert [line for line in log if "could not advance" in line] and len(log) == 1
    with services.db.read_scope() as session:
        partitions = session.query(Partition).filter_by(job_id=job["job_id"]).all()
        assert [p.state for p in partitions] == [JobState.JOB_STARTING.value] or \
            all(p.state == JobState.JOB_FAILURE.value for p in partitions)


def test_retries_back_off(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    retries = Retries(max_tries=3, delays=(1.0, 4.0))
    assert retries.due("job") and retries.failed("job") == 1
    assert not retries.due("job")
    clock[0] += 1.0
    assert retries.due("job") and retries.failed("job") == 2
    clock[0] += 3.9
    assert not retries.due("job")
    clock[0] += 0.1
    assert retries.due("job") and retries.failed("job") == 3


def test_a_build_whose_controller_keeps_raising_fails_with_the_error(sqlite_services, monkeypatch):
    services = sqlite_services
    services.workspaces.create("ws")
    build_id = services.train.submit_source("ws", body_from_bytes(_source("train")))["job_id"]
    _failing(monkeypatch, BuildController, "start")
    controller = BuildController(services)
    controller.retries = Retries(delays=(0.0, 0.0))
    _ticks(controller, lambda: _job(services, build_id).finished_at is not None)
    job = _job(services, build_id)
    assert job.state == JobState.JOB_FAILURE.value
    assert job.reason == "kaos: the scheduler could not advance this build: RuntimeError: boom"


def test_an_endpoint_whose_controller_keeps_raising_fails_with_the_error(sqlite_services, monkeypatch):
    services = sqlite_services
    services.workspaces.create("ws")
    deployed = services.inference.deploy("ws", None, body_from_bytes(_source("serve")))
    _ticks(BuildController(services), lambda: _job(services, deployed["job_id"]).finished_at is not None)
    _failing(monkeypatch, EndpointController, "_start")
    controller = EndpointController(services)
    controller.retries = Retries(delays=(0.0, 0.0))
    _ticks(controller, lambda: services.inference.listing("ws", "h")[0]["state"] == FAILURE)
    assert services.inference.listing("ws", "h")[0]["reason"] == \
        "kaos: the scheduler could not advance this endpoint: RuntimeError: boom"


NOT_READY = """#!/usr/bin/env python3
import http.server, os
class Sick(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(500)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), Sick).serve_forever()
"""


def test_an_endpoint_that_never_becomes_ready_gives_up_with_the_reason(tmp_path, monkeypatch):
    """/ping answers 500 forever: the reason says what it waits for; after the start timeout it is a failed
    start, restarted with backoff; after 5 it is PIPELINE_FAILURE with the reason."""
    import kaos_backend.control.endpoints as endpoints_module
    monkeypatch.setattr(endpoints_module, "MAX_BACKOFF_SECONDS", 0)
    config = Config.from_env({}, data_dir=tmp_path / "data", database_url=f"sqlite:///{tmp_path / 'kaos.db'}",
                             endpoint_start_timeout=1)
    services = Services(config)
    try:
        services.workspaces.create("ws")
        entries = {"tiny/Dockerfile": "FROM python:3.11-slim\n", "tiny/model/__init__.py": "",
                   "tiny/model/serve": NOT_READY, "tiny/model/web-requirements.txt": "",
                   "tiny/model/requirements.txt": ""}
        deployed = services.inference.deploy("ws", None, body_from_bytes(zip_bytes(entries)))
        _ticks(BuildController(services), lambda: _job(services, deployed["job_id"]).finished_at is not None)
        controller = EndpointController(services)
        reasons = set()

        def failed():
            endpoint = services.inference.listing("ws", "h")[0]
            reasons.add(endpoint["reason"])
            return endpoint["state"] == FAILURE
        _ticks(controller, failed, timeout=180)
        endpoint = services.inference.listing("ws", "h")[0]
        assert "waiting to be ready: GET /ping answered 500" in reasons
        assert endpoint["restarts"] == 5
        assert endpoint["reason"] == ("the serve process ended: not ready 1s after its start (GET /ping answered "
                                      "500): stopped")
    finally:
        services.dispose()
        stop_platform(platform_id(tmp_path / "data"))


def test_an_endpoint_and_a_notebook_waiting_for_their_image_say_so_until_it_is_built(services):
    """A newcomer's finding: while the build of its image ran, `kaos serve list` (and `kaos notebook list`) showed
    the endpoint STARTING with an empty reason. Its reason names the build and its state, then goes once the
    image is built and the endpoint starts (a reason of its own follows, if any)."""
    from kaos_backend.control.notebooks import NotebookController
    from kaos_backend.models import Notebook
    services.workspaces.create("ws")
    deployed = services.inference.deploy("ws", None, body_from_bytes(_source("serve")))
    build_id = deployed["job_id"]
    notebook = services.notebooks.deploy("ws", body_from_bytes(_source("serve")), user="tester")
    endpoints, notebooks = EndpointController(services), NotebookController(services)
    endpoints.tick()
    notebooks.tick()
    state = _job(services, build_id).state
    assert state in ("JOB_PENDING", "JOB_STARTING"), state
    assert services.inference.listing("ws", "h")[0]["reason"] == \
        f"waiting for its image: build job {build_id} is {state} (kaos serve build-logs -j {build_id})"
    with services.db.read_scope() as session:
        assert session.get(Notebook, notebook["notebook"]).reason == \
            f"waiting for its image: build job {notebook['job_id']} is {_job(services, notebook['job_id']).state} " \
            f"(kaos notebook build-logs -j {notebook['job_id']})"

    _ticks(BuildController(services), lambda: _job(services, build_id).finished_at is not None)

    def started():
        with services.db.read_scope() as session:
            return session.get(Endpoint, deployed["endpoint"]).executor_state is not None
    _ticks(endpoints, started)  # (the tick that starts it: its reason as it is then)
    listed = services.inference.listing("ws", "h")[0]
    assert not (listed["reason"] or "").startswith("waiting for its image"), listed
    with services.db.session_scope() as session:
        session.get(Endpoint, deployed["endpoint"]).desired = "kill"
    _ticks(endpoints, lambda: _endpoint_gone(services, deployed["endpoint"]))
