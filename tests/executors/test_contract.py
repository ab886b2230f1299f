"""The executor contract of kaos_backend/executors/base.py, checked on every executor that can run here through
its public methods alone (the local executor twice: in a cgroup of its own where the machine allows it, and
under its runner as child subreaper)."""
import os
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from kaos_backend.executors.base import VANISHED, WorkloadSpec
from kaos_backend.executors.local import LocalExecutor
from tests.support.supervision import alive

JOB = "0" * 32


@pytest.fixture(params=["local-auto", "local-subreaper"])
def make_executor(request, tmp_path):
    kind, _, mode = request.param.partition("-")
    if kind == "local":
        return lambda: LocalExecutor(tmp_path / "data", containment_mode=mode)
    raise AssertionError(request.param)


def _spec(tmp_path, command, kind="train", **extra):
    job_dir = tmp_path / "data" / "jobs" / JOB
    work = job_dir / "work"
    work.mkdir(parents=True, exist_ok=True)
    return WorkloadSpec(job_id=JOB, kind=kind, command=command, workdir=str(work), log=f"jobs/{JOB}", **extra)


def _wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value is not None and value is not False:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def _texts(executor):
    return [line.split("] ", 1)[1] for line in executor.logs()]



def _pids_written(path: Path, count: int):
    return _wait_for(lambda: (lambda pids: pids if len(pids) >= count else None)(
        [int(x) for x in path.read_text().split()] if path.exists() else []))


# A workload that starts a child in its own session and a double-forked daemon, writes their pids and its own (in
# its working directory), then waits: what a training that starts a server or a data loader looks like.
SPAWNER = """
import os, subprocess, sys, time
pids = [os.getpid()]
pids.append(subprocess.Popen(['sleep', '611'], start_new_session=True).pid)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        open(sys.argv[1] + '.daemon', 'w').write(str(os.getpid()))
        time.sleep(600)
    os._exit(0)
time.sleep(0.5)
pids.append(int(open(sys.argv[1] + '.daemon').read()))
open(sys.argv[1], 'w').write(' '.join(map(str, pids)))
print('spawned', flush=True)
time.sleep(float(sys.argv[2]))
"""


def test_start_poll_and_log(make_executor, tmp_path):
    executor = make_executor()
    executor.start(_spec(tmp_path, [sys.executable, "-c", "print('hello'); import sys; sys.exit(3)"],
                         preamble=["processing job x"]))
    assert _wait_for(lambda: executor.poll()) == 3
    lines = list(executor.logs())
    assert lines[0].endswith("] processing job x")
    assert all(line.startswith("[20") for line in lines)
    assert "hello" in _texts(executor)
    assert executor.reason() == "exit code 3 (last output: hello)"
    assert _texts(executor)[-1] == "kaos: the training ended: exit code 3 (last output: hello)"


def test_the_log_says_how_the_workload_is_contained(make_executor, tmp_path):
    executor = make_executor()
    executor.start(_spec(tmp_path, [sys.executable, "-c", "pass"], preamble=["processing job x",
                                                                               "beginning to run user code"]))
    _wait_for(lambda: executor.poll() is not None)
    texts = _texts(executor)
    assert texts[0] == "processing job x"
    assert any(text.startswith("kaos: the training is contained ") for text in texts)
    assert texts.index("beginning to run user code") > 1  # the containment lines come before the user code


def test_a_signal_is_the_reason(make_executor, tmp_path):
    executor = make_executor()
    executor.start(_spec(tmp_path, [sys.executable, "-c", "import os; print('epoch 1'); os.kill(os.getpid(), 9)"]))
    assert _wait_for(lambda: executor.poll()) == 128 + signal.SIGKILL
    assert executor.reason() == "killed by signal 9 (SIGKILL)"
    assert _texts(executor)[-2:] == ["epoch 1", "kaos: the training ended: killed by signal 9 (SIGKILL)"]


def test_state_survives_a_new_executor_instance(make_executor, tmp_path):
    first = make_executor()
    first.start(_spec(tmp_path, [sys.executable, "-c", "import time; time.sleep(30)"]))
    state = first.get_state()
    second = make_executor()
    second.load_state(state)
    assert second.poll() is None and second.reason() is None
    second.stop(timeout=5)
    assert second.poll() is not None
    assert first.poll() is not None
    assert second.reason() == "killed on request"


def test_stop_ends_every_process_even_those_that_left_the_session(make_executor, tmp_path):
    executor = make_executor()
    spec = _spec(tmp_path, [sys.executable, "-c", SPAWNER, "pids", "600"])
    pid_file = Path(spec.workdir) / "pids"
    executor.start(spec)
    pids = _pids_written(pid_file, 3)
    assert all(alive(pid) for pid in pids)
    executor.stop(timeout=5)
    assert not any(alive(pid) for pid in pids)
    assert executor.poll() is not None and executor.reason() == "killed on request"
    executor.stop()  # stopping a finished workload is not an error


def test_the_end_of_the_main_process_ends_the_workload(make_executor, tmp_path):
    """What the main process left running (holding its output open, or not) is stopped and named in the log."""
    executor = make_executor()
    spec = _spec(tmp_path, [sys.executable, "-c", SPAWNER, "pids", "0"])
    pid_file = Path(spec.workdir) / "pids"
    executor.start(spec)
    assert _wait_for(lambda: executor.poll(), timeout=30) == 0
    pids = [int(x) for x in pid_file.read_text().split()]
    assert not any(alive(pid) for pid in pids)
    stopped = [text for text in _texts(executor) if text.startswith("kaos: stopped ")]
    assert len(stopped) == 1 and "sleep 611" in stopped[0] and str(pids[1]) in stopped[0], _texts(executor)
    assert executor.reason() == "exit code 0"


def test_stop_escalates_when_the_workload_ignores_sigterm(make_executor, tmp_path):
    executor = make_executor()
    script = ("import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
              "open('pid', 'w').write(str(os.getpid())); print('ready', flush=True); time.sleep(60)")
    spec = _spec(tmp_path, [sys.executable, "-c", script])
    executor.start(spec)
    _wait_for(lambda: "ready" in _texts(executor))
    pid = int((Path(spec.workdir) / "pid").read_text())
    started = time.monotonic()
    executor.stop(timeout=0.5)
    assert not alive(pid)
    assert time.monotonic() - started < 10  # a bound on hanging, not a speed claim


def test_a_vanished_workload_counts_as_finished_and_leaves_nothing_running(make_executor, tmp_path):
    """The runner itself is killed: the workload is VANISHED, and what it ran does not serve on unsupervised."""
    executor = make_executor()
    spec = _spec(tmp_path, [sys.executable, "-c", SPAWNER, "pids", "600"])
    pid_file = Path(spec.workdir) / "pids"
    executor.start(spec)
    pids = _pids_written(pid_file, 3)
    state = executor.get_state()
    os.kill(state["pid"], signal.SIGKILL)  # the runner, as a crash or an OOM kill of it would
    reattached = make_executor()
    reattached.load_state(state)
    assert _wait_for(lambda: reattached.poll()) == VANISHED
    assert reattached.reason().startswith("vanished")
    assert not any(alive(pid) for pid in pids)


def test_follow_streams_until_the_end(make_executor, tmp_path):
    executor = make_executor()
    script = "import time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.2)"
    executor.start(_spec(tmp_path, [sys.executable, "-c", script]))
    texts = [line.split("] ", 1)[1] for line in executor.logs(follow=True)]
    assert [text for text in texts if not text.startswith("kaos: ")] == ["0", "1", "2"]
    assert texts[-1] == "kaos: the training ended: exit code 0"


def test_a_serve_workload_listens_where_start_says(make_executor, tmp_path):
    executor = make_executor()
    script = ("import os, http.server\n"
              "http.server.HTTPServer((os.environ['HOST'], int(os.environ['PORT'])),"
              " http.server.SimpleHTTPRequestHandler).serve_forever()")
    address = executor.start(_spec(tmp_path, [sys.executable, "-c", script], kind="serve"))
    assert address is not None and address.host and address.port

    def connects():
        try:
            socket.create_connection((address.host, address.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    _wait_for(connects)
    executor.stop()


def test_a_training_listens_nowhere(make_executor, tmp_path):
    executor = make_executor()
    assert executor.start(_spec(tmp_path, [sys.executable, "-c", "pass"])) is None
    _wait_for(lambda: executor.poll() is not None)


def test_user_code_does_not_see_the_backend_token(make_executor, tmp_path, monkeypatch):
    monkeypatch.setenv("KAOS_TOKEN", "secret")
    executor = make_executor()
    executor.start(_spec(tmp_path, [sys.executable, "-c", "import os; print(os.environ.get('KAOS_TOKEN'))"]))
    _wait_for(lambda: executor.poll() is not None)
    assert "None" in _texts(executor) and "secret" not in "\n".join(_texts(executor))


def test_clear_state_leaves_an_idle_executor_that_can_start_again(make_executor, tmp_path):
    executor = make_executor()
    executor.start(_spec(tmp_path, [sys.executable, "-c", "print('first')"]))
    assert _wait_for(lambda: executor.poll() is not None)
    executor.clear_state()
    assert executor.get_state() == {}
    executor.start(_spec(tmp_path, [sys.executable, "-c", "import sys; sys.exit(4)"]))
    assert _wait_for(lambda: executor.poll()) == 4


def test_the_log_is_read_and_added_to_through_any_executor_bound_to_it(make_executor, tmp_path):
    """A job's log is the executor's to keep: an idle executor bound to its name reads the same records, as
    records or as bytes (what the front polls), and adds the platform's own."""
    executor = make_executor()
    executor.start(_spec(tmp_path, [sys.executable, "-c", "print('hello')"], preamble=["processing job x"]))
    _wait_for(lambda: executor.poll() is not None)
    log = make_executor().bind_log(f"jobs/{JOB}")
    assert list(log.logs()) == list(executor.logs()) and "hello" in _texts(log)
    log.append_log("kaos: a record of the platform's")
    assert _texts(executor)[-1] == "kaos: a record of the platform's"
    reader, raw = log.open_log(), b""
    while chunk := reader.read(7):
        raw += chunk
    reader.close()
    assert raw.decode().splitlines() == list(executor.logs())
    assert list(log.logs(follow=True, until=lambda: True)) == list(executor.logs())
    with pytest.raises(ValueError):
        make_executor().bind_log("../../etc")
