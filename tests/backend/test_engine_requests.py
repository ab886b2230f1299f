"""The engine requests of the scheduler's tick, tracked while in flight (kaos_backend/executors/engine_requests.py),
and what the engine watch and the health make of one the engine does not answer (control/engine_watch.py,
kaos_backend/part_status.py): the engine `waiting`, the scheduler up while its heartbeat stops, a timed-out
request holding the workloads with a back-off and ending the controller's round uncounted. The clients' part is
asked of an HTTP server of this test that answers GET /version and /_ping and nothing else (the API server with a
wedged etcd, the Docker engine stuck on a create). The whole platform's cases are
tests/kubernetes/test_attack_findings2.py's and tests/docker/test_engine_hangs.py's."""
import logging
import os
import socket
import threading
import time
from types import SimpleNamespace

import pytest
from kaos_backend import part_status
from kaos_backend.control import engine_watch
from kaos_backend.control.common import Retries, advance_each
from kaos_backend.control.engine_watch import EngineWatch
from kaos_backend.executors import engine_requests
from tests.backend.test_engine_watch import _reasons, _rows, closed, watching
from tests.backend.test_engine_watch import engine  # noqa: F401 (a fixture)

BOUND = 60.0  # a bound against hanging


@pytest.fixture(autouse=True)
def forgotten(monkeypatch):
    """Nothing tracked from a test before; the engine watch's thread quick."""
    monkeypatch.setattr(engine_watch, "NOTICE_SECONDS", 0.2)
    monkeypatch.setattr(engine_watch, "WATCH_SECONDS", 0.05)
    engine_requests.reset()
    yield
    engine_requests.reset()


class Hanging:
    """An HTTP server on 127.0.0.1 that answers GET /version and GET /_ping and reads every other request
    without ever answering it; `accepted` counts its connections' requests that it left unanswered."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.hung = 0
        self.sockets = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.sockets.append(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client):
        pending = b""
        while True:
            try:
                data = client.recv(65536)
            except OSError:
                return
            if not data:
                return
            pending += data
            while b"\r\n\r\n" in pending:
                head, pending = pending.split(b"\r\n\r\n", 1)
                line = head.split(b"\r\n", 1)[0].decode()
                if line.startswith("GET /version") or line.startswith("GET /_ping") or "/version " in line:
                    body = b'{"ApiVersion": "1.43", "Version": "24.0.0", "major": "1", "minor": "29"}'
                    client.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                                   + str(len(body)).encode() + b"\r\n\r\n" + body)
                else:
                    self.hung += 1
                    return  # read, never answered: the socket stays open

    def close(self):
        self.listener.close()
        for sock in self.sockets:
            sock.close()


@pytest.fixture
def hanging():
    made = Hanging()
    yield made
    made.close()


# -- tracking -------------------------------------------------------------------------------------------------
def test_only_the_tick_s_requests_are_tracked_and_a_timeout_is_kept_until_taken():
    with engine_requests.tracked("GET /off-the-tick", 5):
        assert engine_requests.waiting() is None
    with engine_requests.ticking():
        with engine_requests.tracked("GET /a", 5):
            request = engine_requests.waiting()
            assert request.what == "GET /a" and request.bound == 5 and engine_requests.waiting(after=60) is None
        assert engine_requests.waiting() is None
        with pytest.raises(ConnectionRefusedError):
            with engine_requests.tracked("GET /refused", 5):
                raise ConnectionRefusedError("refused")
        assert engine_requests.timed_out() is None  # an answer, not a timeout
        with pytest.raises(socket.timeout):
            with engine_requests.tracked("POST /create", 7):
                raise socket.timeout("timed out")
    found = engine_requests.timed_out()
    assert (found.what, found.bound, found.error) == ("POST /create", 7, "timed out")
    assert engine_requests.take_timed_out() == found and engine_requests.timed_out() is None


def test_a_timeout_is_recognized_through_what_the_clients_wrap_it_in():
    import requests
    import urllib3.exceptions
    read = urllib3.exceptions.ReadTimeoutError(None, "/x", "Read timed out. (read timeout=2)")
    assert engine_requests.is_timeout(read)
    assert engine_requests.is_timeout(urllib3.exceptions.MaxRetryError(None, "/x", read))
    assert engine_requests.is_timeout(requests.exceptions.ReadTimeout(read))
    assert not engine_requests.is_timeout(requests.exceptions.ConnectionError(ConnectionRefusedError()))
    assert not engine_requests.is_timeout(ValueError("no"))


# -- the clients ----------------------------------------------------------------------------------------------
def test_the_kubernetes_client_tracks_the_tick_s_requests_and_tries_once(hanging, tmp_path, monkeypatch):
    from kaos_backend.executors import kubernetes_client
    monkeypatch.setattr(kubernetes_client, "REQUEST_TIMEOUT", (2, 1))
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: hang\n"
        f"clusters: [{{name: hang, cluster: {{server: 'http://127.0.0.1:{hanging.port}'}}}}]\n"
        "contexts: [{name: hang, context: {cluster: hang, user: me}}]\nusers: [{name: me, user: {token: t}}]\n")
    core = kubernetes_client.apis(SimpleNamespace(kubeconfig=str(kubeconfig), kube_context=""))[0]
    seen = []

    def look():
        while not stop.is_set():
            seen.append(engine_requests.waiting())
            time.sleep(0.05)
    stop = threading.Event()
    looking = threading.Thread(target=look, daemon=True)
    looking.start()
    with engine_requests.ticking(), pytest.raises(Exception) as raised:
        core.read_namespaced_secret("a", "kaos")  # a GET: urllib3 would try it again
    stop.set()
    looking.join(BOUND)
    assert engine_requests.is_timeout(raised.value)
    assert hanging.hung == 1  # one try
    waited = [request for request in seen if request is not None]
    assert waited and waited[0].what == "GET /api/v1/namespaces/kaos/secrets/a" and waited[0].bound == 3
    assert engine_requests.take_timed_out().what == "GET /api/v1/namespaces/kaos/secrets/a"
    said = kubernetes_client.as_cluster_error(raised.value, "there", "to read the Secret a")
    assert isinstance(said, kubernetes_client.ClusterUnavailable) and isinstance(said, engine_requests.EngineError)


def test_the_docker_tick_s_client_tracks_its_requests(hanging, monkeypatch):
    pytest.importorskip("docker")
    from kaos_backend.executors import docker_client
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{hanging.port}")
    client = docker_client.engine(1)
    assert docker_client.engine(1) is client and docker_client.engine(2) is not client
    with engine_requests.ticking(), pytest.raises(Exception) as raised:
        client.api.create_container("busybox", name="never-answered")
    assert engine_requests.is_timeout(raised.value)
    found = engine_requests.take_timed_out()
    assert found.what.endswith("/containers/create") and found.what.startswith("POST ") and found.bound == 1
    assert docker_client.TICK_TIMEOUT < docker_client.STREAM_TIMEOUT


# -- the engine watch and the health --------------------------------------------------------------------------
def _supervised(run_dir):
    part_status.write_status(run_dir / part_status.STATUS_FILE, {"parts": {
        name: {"state": "up"} for name in part_status.PART_NAMES}})
    part_status.write_heartbeat(run_dir / part_status.HEARTBEAT_FILE, {"role": "leader"})


@pytest.fixture
def watch(services, tmp_path):
    """An EngineWatch writing its status in `tmp_path`; its watching thread stopped after the test (it reads the
    test's database, gone then)."""
    made = EngineWatch(services.config, services, tmp_path / part_status.ENGINE_FILE)
    yield made
    closed(made)


@pytest.mark.usefixtures("engine")
def test_a_request_the_engine_does_not_answer_names_the_engine_not_the_scheduler(services, tmp_path, watch):
    _supervised(tmp_path)
    watch.tick()
    assert part_status.evaluate(tmp_path).healthy
    answer = threading.Event()

    def tick():
        with engine_requests.ticking(), engine_requests.tracked("POST /api/v1/namespaces/kaos/secrets", 30):
            answer.wait(BOUND)
    ticking = threading.Thread(target=tick, daemon=True)
    ticking.start()
    try:
        deadline = time.monotonic() + BOUND
        while part_status.read_status(tmp_path / part_status.ENGINE_FILE)["state"] != "waiting":
            assert time.monotonic() < deadline, "the engine's status never said waiting"
            time.sleep(0.05)
        stale = time.time() - part_status.HEARTBEAT_STALE_SECONDS - 5
        os.utime(tmp_path / part_status.HEARTBEAT_FILE, (stale, stale))
        verdict = part_status.evaluate(tmp_path)
        assert not verdict.healthy and verdict.part == "engine", verdict
        assert verdict.parts["scheduler"]["state"] == "up" and verdict.parts["scheduler"]["waiting_on"] == "engine"
        waiting = verdict.parts["engine"]["waiting"]
        assert waiting["what"] == "POST /api/v1/namespaces/kaos/secrets" and waiting["bound"] == 30
        assert verdict.message.startswith("The test engine has not answered POST /api/v1/namespaces/kaos/secrets "
                                          "since "), verdict.message
        # past the request's bound and the grace, the scheduler should have ended it: it is down
        late = part_status.evaluate(tmp_path, now=waiting["since"] + 30 + part_status.WAITING_GRACE_SECONDS + 1)
        assert late.part == "scheduler" and late.parts["scheduler"]["state"] == "down"
    finally:
        answer.set()
        ticking.join(BOUND)
    deadline = time.monotonic() + BOUND
    while part_status.read_status(tmp_path / part_status.ENGINE_FILE)["state"] != "up":
        assert time.monotonic() < deadline, "the engine's status still says waiting"
        time.sleep(0.05)


def _wait_until(predicate, what: str):
    deadline = time.monotonic() + BOUND
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@pytest.mark.usefixtures("engine")
def test_while_a_request_waits_the_held_workloads_without_a_reason_of_their_own_say_so(services, tmp_path, watch):
    """The lists show a held workload's reason: while the tick waits on the engine, those without one of their own
    get the engine's ('the test engine has not answered POST ... since ...', as the health says it), taken off once
    the request ended, and off what a scheduler before this one left."""
    from kaos_backend.models import Job
    running, ended = _rows(services)
    with services.db.session_scope() as session:
        own = session.get(Job, running)
        own.reason = "waiting to start: its pod cannot be scheduled"
        other = Job(id=f"{running[:-1]}x", workspace_id=own.workspace_id, kind="build-train", state="JOB_RUNNING",
                    user="me")
        session.add(other)
    watch.tick()
    answer = threading.Event()

    def tick():
        with engine_requests.ticking(), engine_requests.tracked("POST /containers/create", 120):
            answer.wait(BOUND)

    def other_reason():
        with services.db.read_scope() as session:
            return session.get(Job, other.id).reason
    ticking = threading.Thread(target=tick, daemon=True)
    ticking.start()
    try:
        _wait_until(lambda: other_reason() is not None, "the held build never said why")
        said = other_reason()
        assert said.startswith("the test engine has not answered POST /containers/create since ") \
            and said.endswith(" UTC"), said
        assert said == part_status.read_status(tmp_path / part_status.ENGINE_FILE)["reason"]
        assert _reasons(services, running, ended) == ("waiting to start: its pod cannot be scheduled", None, said)
    finally:
        answer.set()
        ticking.join(BOUND)
    _wait_until(lambda: other_reason() is None, "the held build's waiting reason stayed")
    assert _reasons(services, running, ended) == ("waiting to start: its pod cannot be scheduled", None, None)

    with services.db.session_scope() as session:  # left by a scheduler that ended while a request waited
        session.get(Job, other.id).reason = said
    EngineWatch(services.config, services, None).tick()
    assert other_reason() is None


def _timed_out(what="POST /api/v1/namespaces/kaos/jobs"):
    with engine_requests.ticking(), pytest.raises(socket.timeout):
        with engine_requests.tracked(what, 30):
            raise socket.timeout("read timed out")


@pytest.mark.usefixtures("engine")
def test_a_request_that_timed_out_holds_the_workloads_with_a_back_off(services, tmp_path, monkeypatch, request):
    running, ended = _rows(services)
    watch, status, ran, task = watching(services, tmp_path, request)
    watch.tick()
    _timed_out()
    task()
    assert ran == []  # the rest of the round waits too

    watch.tick()
    reason = watch.reason()
    assert reason.startswith("the test engine does not answer since ")
    assert _reasons(services, running, ended) == (reason, None, reason)
    down = part_status.read_status(status)
    assert down["state"] == "down" and "did not answer POST /api/v1/namespaces/kaos/jobs within 30 s" in down["error"]
    assert watch._hold_seconds == engine_watch.HOLD_SECONDS
    task()
    assert ran == []  # held

    for expected in (2, 4, 8, 12, 12):
        _timed_out()
        watch.tick()
        assert watch._hold_seconds == min(engine_watch.HOLD_SECONDS * expected, engine_watch.MAX_HOLD_SECONDS)

    monkeypatch.setattr(watch, "_hold_until", time.monotonic() - 1)  # the hold over: the engine is asked again
    watch.tick()
    task()
    assert ran == [1] and part_status.read_status(status)["state"] == "up"
    assert _reasons(services, running, ended) == (None, None, None)


def test_a_timed_out_try_ends_the_round_and_is_not_counted(caplog):
    retries, advanced = Retries(), []

    def advance(key):
        advanced.append(key)
        if key == "b":
            _timed_out()
            raise engine_requests.EngineError("the test engine timed out")
    with caplog.at_level(logging.INFO):
        advance_each(["a", "b", "c"], advance, retries, lambda *_: pytest.fail("given up"), logging.getLogger("t"),
                     "Job")
    assert advanced == ["a", "b"] and retries.due("b") and retries._failures == {}
    said = [record.getMessage() for record in caplog.records if record.name == "t"]
    assert len(said) == 1 and "Traceback" not in said[0] and "did not answer POST" in said[0], said


def test_an_engine_error_is_logged_in_one_line(caplog):
    def advance(key):
        raise engine_requests.EngineError("the Kubernetes API server at x cannot be reached: refused")
    with caplog.at_level(logging.INFO):
        advance_each(["a"], advance, Retries(), lambda *_: None, logging.getLogger("t"), "Job")
    said = [record.getMessage() for record in caplog.records if record.name == "t"]
    assert len(said) == 1 and "\n" not in said[0] and said[0].endswith("cannot be reached: refused"), said
