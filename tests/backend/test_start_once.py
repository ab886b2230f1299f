"""A scheduler killed between starting a workload and recording it: the next leader's controller starts it
again, and gets the first start back (the local executor keys starts by job, executors/local_claim.py) instead
of running it twice. The kill is played by a controller whose write of the start is lost; the next leader is a
fresh controller over the same database and data directory. Real processes, SQLite."""
import time

import pytest
from kaos_model import JobState, PipelineState

from kaos_backend.config import Config, platform_id
from kaos_backend.control import endpoints
from kaos_backend.control.builds import BuildController
from kaos_backend.control.endpoints import EndpointController
from kaos_backend.control.trainings import TrainController
from kaos_backend.executors import log_of
from kaos_backend.executors.base import endpoint_log_name, job_log_name
from kaos_backend.executors.containment import stop_platform
from kaos_backend.models import Endpoint, Job, Partition
from kaos_backend.services import Services
from kaos_backend.services.uploads import body_from_bytes
from tests.backend.helpers import features_zip, zip_bytes

HELD = """#!/usr/bin/env python3
import os, sys, time
print('training started', flush=True)
deadline = time.monotonic() + 120
while not os.path.exists({go!r}) and time.monotonic() < deadline:
    time.sleep(0.05)
os.makedirs(sys.argv[1] + '/model')
"""
SERVE = """#!/usr/bin/env python3
import http.server, os
print('serving', flush=True)
class Ping(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == '/ping' else 404)
        self.end_headers()
http.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), Ping).serve_forever()
"""


def _source(files: dict) -> bytes:
    entries = {"tiny/Dockerfile": "FROM python:3.11-slim\n", "tiny/model/__init__.py": "",
               "tiny/model/requirements.txt": "", **{f"tiny/model/{name}": text for name, text in files.items()}}
    return zip_bytes(entries)


@pytest.fixture
def services(tmp_path):
    config = Config.from_env({}, data_dir=tmp_path / "data", database_url=f"sqlite:///{tmp_path / 'kaos.db'}")
    made = Services(config)
    made.workspaces.create("ws")
    yield made
    made.dispose()
    stop_platform(platform_id(tmp_path / "data"))


def _ticks(controller, done, timeout=120.0):
    """Tick until `done()`; a bound against hanging, not a speed check."""
    deadline = time.monotonic() + timeout
    while not (value := done()):
        assert time.monotonic() < deadline, "the controller did not get there"
        controller.tick()
        time.sleep(0.05)
    return value


def _read(services, model, key):
    with services.db.read_scope() as session:
        return session.get(model, key)


def _built(services, job_id):
    _ticks(BuildController(services), lambda: _read(services, Job, job_id).finished_at is not None)
    assert _read(services, Job, job_id).state == JobState.JOB_SUCCESS.value


def test_a_training_whose_start_was_never_recorded_is_found_not_run_again(services, monkeypatch, shared_dir):
    go = shared_dir / "go"
    build = services.train.submit_source("ws", body_from_bytes(_source({"train": HELD.format(go=str(go))})))
    services.train.submit_features("ws", body_from_bytes(features_zip()))
    _built(services, build["job_id"])
    lost = []
    with monkeypatch.context() as killed:  # the pass starts the partition, then its process dies unrecorded
        killed.setattr(TrainController, "_write", lambda self, job, partitions, changes, *_: lost.append(changes))
        _ticks(TrainController(services), lambda: lost)
    started = next(iter(lost[0].values()))
    assert started["state"] == JobState.JOB_RUNNING.value
    job_id = services.jobs.listing("ws", "train")[0]["job_id"]
    with services.db.read_scope() as session:
        partition = session.query(Partition).filter_by(job_id=job_id).one()
    assert partition.state == JobState.JOB_STARTING.value and partition.executor_state is None

    leader = TrainController(services)
    _ticks(leader, lambda: _read(services, Partition, partition.id).executor_state)
    assert _read(services, Partition, partition.id).executor_state == started["executor_state"]
    go.write_text("")
    _ticks(leader, lambda: _read(services, Job, job_id).finished_at is not None)
    assert _read(services, Job, job_id).state == JobState.JOB_SUCCESS.value
    texts = [line.split("] ", 1)[1] for line in log_of(services.config, job_log_name(job_id)).logs()]
    assert texts.count("training started") == 1 and texts.count("beginning to run user code") == 1, texts


def test_an_endpoint_whose_start_was_never_recorded_is_found_not_run_twice(services, monkeypatch):
    deployed = services.inference.deploy("ws", None, body_from_bytes(_source({"serve": SERVE,
                                                                             "web-requirements.txt": ""})))
    _built(services, deployed["job_id"])
    with services.db.read_scope() as session:
        name = session.query(Endpoint).one().name
    lost = []
    real_update = endpoints.update

    def lose_the_start(svc, model, key, changes, **kwargs):
        if "executor_state" in changes and changes["executor_state"]:
            lost.append(changes)
            return True
        return real_update(svc, model, key, changes, **kwargs)

    with monkeypatch.context() as killed:
        killed.setattr(endpoints, "update", lose_the_start)
        _ticks(EndpointController(services), lambda: lost)
    assert _read(services, Endpoint, name).executor_state is None

    leader = EndpointController(services)
    _ticks(leader, lambda: _read(services, Endpoint, name).state == PipelineState.PIPELINE_RUNNING.value)
    endpoint = _read(services, Endpoint, name)
    assert endpoint.executor_state == lost[0]["executor_state"] and endpoint.port == lost[0]["port"]
    texts = [line.split("] ", 1)[1] for line in log_of(services.config, endpoint_log_name(name)).logs()]
    assert texts.count("serving") == 1, texts
