"""The executor contract of kaos_backend/executors/base.py, checked on every executor that can run here."""
import socket
import sys
import time
from pathlib import Path

import pytest

from kaos_backend.executors.base import VANISHED, WorkloadSpec
from kaos_backend.executors.local import LocalExecutor, _session_members


@pytest.fixture(params=["local"])
def make_executor(request, tmp_path):
    if request.param == "local":
        return lambda: LocalExecutor(tmp_path / "envs")
    raise AssertionError(request.param)


def _spec(tmp_path, command, kind="train", **extra):
    return WorkloadSpec(job_id="0" * 32, kind=kind, command=command, workdir=str(tmp_path),
                        log_path=str(tmp_path / "logs" / "job.log"), **extra)


def _wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value is not None and value is not False:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_start_poll_and_log(make_executor, tmp_path):
    executor = make_executor()
    executor.start(_spec(tmp_path, [sys.executable, "-c", "print('hello'); import sys; sys.exit(3)"],
                         preamble=["processing job x"]))
    assert _wait_for(lambda: executor.poll()) == 3
    lines = list(executor.logs())
    assert lines[0].endswith("] processing job x")
    assert lines[1].endswith("] hello")
    assert all(line.startswith("[20") for line in lines)


def test_state_survives_a_new_executor_instance(make_executor, tmp_path):
    first = make_executor()
    first.start(_spec(tmp_path, [sys.executable, "-c", "import time; time.sleep(30)"]))
    state = first.get_state()
    second = make_executor()
    second.load_state(state)
    assert second.poll() is None
    second.stop(timeout=5)
    assert second.poll() is not None
    assert first.poll() is not None


def test_stop_ends_the_whole_process_tree(make_executor, tmp_path):
    executor = make_executor()
    script = "import subprocess, time; subprocess.Popen(['sleep', '60']); subprocess.Popen(['sleep', '61']); time.sleep(60)"
    executor.start(_spec(tmp_path, [sys.executable, "-c", script]))
    _wait_for(lambda: len(_session_members(executor.get_state()["pid"])) >= 4)
    executor.stop(timeout=5)
    assert _session_members(executor.get_state()["pid"]) == []
    assert executor.poll() is not None
    executor.stop()  # stopping a finished workload is not an error


def test_stop_escalates_when_the_workload_ignores_sigterm(make_executor, tmp_path):
    executor = make_executor()
    script = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    executor.start(_spec(tmp_path, [sys.executable, "-c", script]))
    _wait_for(lambda: any(line.endswith("ready") for line in executor.logs()))
    started = time.monotonic()
    executor.stop(timeout=0.5)
    assert _session_members(executor.get_state()["pid"]) == []
    assert time.monotonic() - started < 10  # a bound on hanging, not a speed claim


def test_a_vanished_workload_counts_as_finished(make_executor, tmp_path):
    executor = make_executor()
    executor.start(_spec(tmp_path, [sys.executable, "-c", "import time; time.sleep(60)"]))
    state = executor.get_state()
    executor.stop(now=True)
    Path(state["exit_path"]).unlink(missing_ok=True)  # as if the runner died before writing its exit code
    reattached = make_executor()
    reattached.load_state(state)
    assert reattached.poll() == VANISHED


def test_follow_streams_until_the_end(make_executor, tmp_path):
    executor = make_executor()
    script = "import time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.2)"
    executor.start(_spec(tmp_path, [sys.executable, "-c", script]))
    lines = list(executor.logs(follow=True))
    assert [line.split("] ", 1)[1] for line in lines] == ["0", "1", "2"]


def test_serve_workload_gets_its_port(make_executor, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    executor = make_executor()
    script = ("import os, http.server\n"
              "http.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), http.server.SimpleHTTPRequestHandler).serve_forever()")
    executor.start(_spec(tmp_path, [sys.executable, "-c", script], port=port, kind="serve"))
    host, bound = executor.address()
    assert bound == port

    def connects():
        try:
            socket.create_connection((host, bound), timeout=0.5).close()
            return True
        except OSError:
            return False

    _wait_for(connects)
    executor.stop()


def test_user_code_does_not_see_the_backend_token(make_executor, tmp_path, monkeypatch):
    monkeypatch.setenv("KAOS_TOKEN", "secret")
    executor = make_executor()
    executor.start(_spec(tmp_path, [sys.executable, "-c", "import os; print(os.environ.get('KAOS_TOKEN'))"]))
    _wait_for(lambda: executor.poll() is not None)
    assert list(executor.logs())[-1].endswith("] None")
