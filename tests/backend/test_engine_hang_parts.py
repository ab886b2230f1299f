"""The parts' side of tests/docker/test_attack_findings3.py's findings (a Docker engine or a Kubernetes API
server that hangs on a request of the scheduler's tick): engine_requests telling a connection closed unanswered
from a refused one, the bound of a Docker stop, a key and a task whose request went unanswered going last, a
starting scheduler whose first tick waits on the engine. No platform, no engine (the docker SDK talks to
test_engine_requests' Hanging server)."""
import threading
import time

import pytest

WAIT_LIMIT = 60.0  # seconds: a bound against hanging


def test_a_connection_closed_unanswered_is_told_apart_from_a_refused_one():
    """The engine_requests side of test_attack_findings3's first finding: a request whose connection the engine
    closed without an answer is held as a timeout is (said so, not "within 120 s"); a refused one is not (no engine
    there: the engine watch's look says so)."""
    import http.client

    import requests
    import urllib3.exceptions

    from kaos_backend.executors import engine_requests
    engine_requests.reset()
    closed = requests.exceptions.ConnectionError(urllib3.exceptions.ProtocolError(
        "Connection aborted.", http.client.RemoteDisconnected("Remote end closed connection without response")))
    assert engine_requests.is_dropped(closed) and not engine_requests.is_timeout(closed)
    assert not engine_requests.is_dropped(requests.exceptions.ConnectionError(ConnectionRefusedError()))
    with engine_requests.ticking(), pytest.raises(requests.exceptions.ConnectionError):
        with engine_requests.tracked("POST /v1.43/containers/create", 120):
            raise closed
    found = engine_requests.take_timed_out()
    assert found.dropped and found.said() == "closed the connection of POST /v1.43/containers/create without an " \
        "answer", found


def test_the_bound_said_of_a_stop_is_what_its_client_waits(monkeypatch):
    """Finding: the Docker tick's client tracked every request with its own read timeout as the bound (120 s), but
    the docker SDK waits that long plus the stop's grace for a stop (`api.stop(container, timeout=10)`: 130 s),
    so the health, which keeps the scheduler up for the bound and 10 s more, called it down just as the stop
    could still be answered (a stop with a longer grace: down for the rest of it). The bound said is now the
    timeout the request is sent with."""
    pytest.importorskip("docker")
    from kaos_backend.executors import docker_client, engine_requests
    from tests.backend.test_engine_requests import Hanging
    hanging = Hanging()
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{hanging.port}")
    monkeypatch.setattr(docker_client, "_clients", {})  # this process's clients, made again for this engine
    engine_requests.reset()
    seen, stop = [], threading.Event()

    def look():
        while not stop.is_set():
            seen.append(engine_requests.waiting())
            time.sleep(0.05)
    looking = threading.Thread(target=look, daemon=True)
    looking.start()
    try:
        with engine_requests.ticking(), pytest.raises(Exception) as raised:
            docker_client.engine(1).api.stop("never-answered", timeout=2)
    finally:
        stop.set()
        looking.join(WAIT_LIMIT)
        hanging.close()
    waited = [request for request in seen if request is not None]
    assert engine_requests.is_timeout(raised.value)
    assert waited and waited[0].what.endswith("/containers/never-answered/stop") and waited[0].bound == 3, waited
    assert engine_requests.take_timed_out().bound == 3


def test_a_key_and_a_task_whose_request_went_unanswered_go_last():
    """The parts of test_attack_findings3's starvation finding: advance_each tries a key whose engine request
    went unanswered after the others (until it advances), and the scheduler runs such a task after the others
    (the first, the engine watch's look, keeps its place)."""
    import logging
    import socket
    from types import SimpleNamespace

    from kaos_backend.control.common import Retries, advance_each
    from kaos_backend.executors import engine_requests
    from kaos_backend.scheduler import Scheduler
    engine_requests.reset()
    retries, tried, hangs = Retries(), [], {"a"}

    def advance(key):
        tried.append(key)
        if key in hangs:
            with engine_requests.tracked(f"POST /containers/{key}/stop", 130):
                raise socket.timeout("timed out")
    with engine_requests.ticking():
        for _ in range(2):
            advance_each(["a", "b", "c"], advance, retries, lambda *_: pytest.fail("given up"),
                         logging.getLogger("t"), "Job")
            engine_requests.take_timed_out()
    assert tried == ["a", "b", "c", "a"], tried
    hangs.clear()
    tried.clear()
    with engine_requests.ticking():
        advance_each(["a", "b", "c"], advance, retries, lambda *_: None, logging.getLogger("t"), "Job")
        advance_each(["a", "b", "c"], advance, retries, lambda *_: None, logging.getLogger("t"), "Job")
    assert tried == ["b", "c", "a", "a", "b", "c"], tried  # once it advanced, back in its place

    ran = []

    def task(name, hangs=False):
        def run():
            ran.append(name)
            if hangs:
                with engine_requests.tracked("DELETE /x", 1):
                    raise socket.timeout("timed out")
        run.__name__ = name
        return run
    scheduler = Scheduler(SimpleNamespace(data_dir="/nonexistent"))  # tick() reads no setting
    scheduler.tasks = [task("watch", hangs=True), task("trainings", hangs=True), task("endpoints")]
    scheduler.tick()
    engine_requests.reset()
    scheduler.tick()
    engine_requests.reset()
    assert ran == ["watch", "trainings", "endpoints", "watch", "endpoints", "trainings"], ran


def test_a_starting_scheduler_whose_first_tick_waits_on_the_engine_is_up(tmp_path):
    """The health's side of test_attack_findings3's deploy finding: a scheduler still `starting` (no heartbeat yet)
    whose engine is `waiting` is up, waiting on the engine, and the verdict names the engine; without it (or with
    a scheduler's before this start), it is starting."""
    from kaos_backend import part_status
    started = time.time()
    part_status.write_status(tmp_path / part_status.STATUS_FILE, {"parts": {
        "front": {"state": "up"}, "api": {"state": "up"}, "scheduler": {"state": "starting", "since": started}}})
    assert part_status.evaluate(tmp_path).part == "scheduler"
    for since, up in ((started - 30, False), (started + 1, True)):  # a scheduler's before this start: not this one
        part_status.write_status(tmp_path / part_status.ENGINE_FILE, {
            "state": "waiting", "name": "the Docker engine", "since": since,
            "reason": "the Docker engine has not answered POST /v1.41/containers/create since now",
            "error": "the scheduler waits for its answer 120 s at most",
            "waiting": {"what": "POST /v1.41/containers/create", "since": since, "bound": 120}})
        verdict = part_status.evaluate(tmp_path)
        assert (verdict.part == "engine") == up and (verdict.parts["scheduler"]["state"] == "up") == up, verdict
        assert (verdict.parts["scheduler"].get("waiting_on") == "engine") == up, verdict
