"""The scheduler's look at the engine its workloads run on (kaos_backend/control/engine_watch.py), with an executor
kind whose engine this test switches off and on: while it does not answer, the engine's controllers are held,
the unfinished workloads' reason says so (cleared once it answers), the backend log has one line each way, and
the status file makes the health name the engine. The real engine's case is tests/docker/test_attack_findings.py's."""
import logging

import pytest
from kaos_model.ids import new_job_id

from kaos_backend import part_status
from kaos_backend.control import engine_watch
from kaos_backend.control.engine_watch import EngineWatch
from kaos_backend.executors.local import LocalExecutor
from kaos_backend.models import Endpoint, Job, Notebook, Workspace


class Engine:
    problem = None


@pytest.fixture
def engine(monkeypatch):
    """The local executor made to run on "the test engine", which answers unless `engine.problem` is set."""
    made = Engine()
    monkeypatch.setattr(LocalExecutor, "engine_name", "the test engine")
    monkeypatch.setattr(LocalExecutor, "engine_problem", classmethod(lambda cls, config: made.problem))
    monkeypatch.setattr(engine_watch, "CHECK_SECONDS", 0.0)
    return made


def _rows(services):
    with services.db.session_scope() as session:
        workspace = Workspace(name="ws", user="me")
        session.add(workspace)
        session.flush()
        running, ended = new_job_id(), new_job_id()
        session.add_all([Job(id=running, workspace_id=workspace.id, kind="train", state="JOB_RUNNING", user="me"),
                         Job(id=ended, workspace_id=workspace.id, kind="train", state="JOB_SUCCESS", user="me",
                             finished_at=workspace.created_at),
                         Endpoint(name="serve-ws-abcdef", workspace_id=workspace.id, user="me",
                                  state="PIPELINE_RUNNING"),
                         Notebook(name="notebook-ws-me", workspace_id=workspace.id, user="me", token_sha256="0" * 64,
                                  state="PIPELINE_RUNNING")])
    return running, ended


def _reasons(services, running, ended):
    with services.db.session_scope() as session:
        notebook = session.get(Notebook, "notebook-ws-me").reason
        assert notebook == session.get(Endpoint, "serve-ws-abcdef").reason  # held and released alike
        return (session.get(Job, running).reason, session.get(Job, ended).reason,
                session.get(Endpoint, "serve-ws-abcdef").reason)


def watching(services, tmp_path, request):
    """(an EngineWatch writing its status file in `tmp_path`, that file, the runs of its gated task, that task);
    its watching thread stopped after the test (it reads the test's database, gone then)."""
    status = tmp_path / part_status.ENGINE_FILE
    watch = EngineWatch(services.config, services, status)
    request.addfinalizer(lambda: closed(watch))
    ticks = []
    return watch, status, ticks, watch.gated(lambda: ticks.append(1))


def closed(watch: EngineWatch) -> None:
    watch.close()
    assert watch._watcher is None or not watch._watcher.is_alive()


def test_while_the_engine_does_not_answer_workloads_are_held_and_say_so(services, engine, tmp_path, caplog,
                                                                        request):
    running, ended = _rows(services)
    watch, status, ticks, task = watching(services, tmp_path, request)

    watch.tick()
    task()
    assert ticks == [1] and part_status.read_status(status)["state"] == "up"
    assert _reasons(services, running, ended) == (None, None, None)

    engine.problem = "at unix:///nowhere: connection refused"
    with caplog.at_level(logging.INFO, logger=engine_watch.log.name):
        for _ in range(3):
            watch.tick()
            task()
    assert ticks == [1]  # held
    reason = watch.reason()
    assert reason.startswith("the test engine does not answer since ") and reason.endswith(" UTC")
    assert _reasons(services, running, ended) == (reason, None, reason)
    down = part_status.read_status(status)
    assert down["state"] == "down" and down["reason"] == reason and down["error"] == engine.problem
    assert part_status.describe("engine", down).startswith("The test engine does not answer since ")

    engine.problem = None
    with caplog.at_level(logging.INFO, logger=engine_watch.log.name):
        for _ in range(3):
            watch.tick()
            task()
    assert ticks == [1, 1, 1, 1]
    assert _reasons(services, running, ended) == (None, None, None)
    assert part_status.read_status(status)["state"] == "up"
    said = [record.getMessage() for record in caplog.records]
    assert len(said) == 2, said  # one line when it stopped answering, one when it answered again
    assert said[0].startswith("the test engine does not answer (at unix:///nowhere") and "answers again" in said[1]


def test_a_new_scheduler_clears_what_one_before_it_left(services, engine):
    running, ended = _rows(services)
    left = "the test engine does not answer since 2026-01-01 00:00:00 UTC"
    with services.db.session_scope() as session:
        session.get(Job, running).reason = left
    EngineWatch(services.config, services).tick()
    assert _reasons(services, running, ended) == (None, None, None)


def test_the_health_names_the_engine_only_while_the_scheduler_is_up(tmp_path, engine):
    part_status.write_status(tmp_path / part_status.STATUS_FILE, {"parts": {
        name: {"state": "up"} for name in part_status.PART_NAMES}})
    part_status.write_heartbeat(tmp_path / part_status.HEARTBEAT_FILE, {"role": "leader"})
    part_status.write_status(tmp_path / part_status.ENGINE_FILE, {
        "state": "down", "name": "the test engine", "reason": "the test engine does not answer since X",
        "error": "refused"})
    verdict = part_status.evaluate(tmp_path)
    assert not verdict.healthy and verdict.part == "engine" and verdict.parts["engine"]["state"] == "down"
    assert verdict.message == ("The test engine does not answer since X (refused): no workload is started, watched "
                               "or stopped until it answers")
    part_status.write_status(tmp_path / part_status.ENGINE_FILE, {"state": "up", "name": "the test engine"})
    assert part_status.evaluate(tmp_path).healthy
