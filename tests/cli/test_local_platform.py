"""local_platform's daemon handling with real subprocesses (no kaos_backend needed)."""
import os
import signal
import socket
import sys
import time

import pytest

from kaos_cli import local_platform
from tests.cli.conftest import free_port


def _wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@pytest.fixture
def http_daemon(tmp_path):
    """`python -m http.server` started detached, serving a directory with an `api/health` file."""
    served = tmp_path / "served"
    (served / "api").mkdir(parents=True)
    (served / "api" / "health").write_text("{}")
    port = free_port()
    process = local_platform.start_daemon(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(served)],
        tmp_path / "logs" / "daemon.log")
    url = f"http://127.0.0.1:{port}/api/"
    assert _wait_for(lambda: local_platform.health_answers(url, None)), "dummy server did not start"
    yield process, url
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_daemon_is_detached(http_daemon):
    process, _ = http_daemon
    assert os.getpgid(process.pid) == process.pid != os.getpgid(0)
    assert os.getsid(process.pid) == process.pid


def test_liveness_needs_pid_and_health(http_daemon, unused_port):
    process, url = http_daemon
    assert local_platform.is_running(process.pid, url, "t")
    assert not local_platform.is_running(process.pid, f"http://127.0.0.1:{unused_port}/api/", "t")
    assert not local_platform.is_running(None, url, "t")


def test_stop_terminates_and_gone_is_fine(http_daemon):
    process, url = http_daemon
    assert local_platform.stop(process.pid, marker="http.server") is True
    assert not local_platform.pid_alive(process.pid)
    assert not local_platform.is_running(process.pid, url, None)
    assert local_platform.stop(process.pid, marker="http.server") is False
    assert local_platform.stop(None) is False


def test_stop_spares_a_process_that_is_not_ours(http_daemon):
    process, url = http_daemon
    assert local_platform.stop(process.pid) is False  # its command line has no "kaos_backend"
    assert local_platform.is_running(process.pid, url, None)


def test_stop_escalates_to_sigkill_and_kills_the_group(tmp_path):
    script = ("import signal, subprocess, sys, time\n"
              "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
              "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
              "print(child.pid, flush=True)\n"
              "time.sleep(120)\n")
    log = tmp_path / "stubborn.log"
    process = local_platform.start_daemon([sys.executable, "-c", script], log)
    assert _wait_for(lambda: log.read_text().strip() != "")
    child = int(log.read_text().split()[0])
    started = time.monotonic()
    assert local_platform.stop(process.pid, timeout=0.5, marker="") is True
    assert time.monotonic() - started < 10
    assert not local_platform.pid_alive(process.pid)
    assert _wait_for(lambda: not local_platform.pid_alive(child))


def test_port_is_free():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert not local_platform.port_is_free(port)
    assert local_platform.port_is_free(port)


def test_log_tail(tmp_path):
    log = tmp_path / "backend.log"
    log.write_text("".join(f"line {n}\n" for n in range(10)))
    assert local_platform.log_tail(log, 5) == [f"line {n}" for n in range(5, 10)]
    assert local_platform.log_tail(tmp_path / "missing.log") == []


def test_missing_backend_modules(monkeypatch):
    monkeypatch.setattr(local_platform, "BACKEND_MODULES", ("json", "no_such_module_kaos"))
    assert local_platform.missing_backend_modules() == ["no_such_module_kaos"]


def test_signals_held_delivers_a_signal_once_the_block_is_done():
    """Starting the backend and recording its pid is not cut apart: a Ctrl-C arriving meanwhile is a
    KeyboardInterrupt once the record is written; the handlers are as they were afterwards."""
    before = {sig: signal.getsignal(sig) for sig in local_platform.HELD_SIGNALS}
    done = []
    with pytest.raises(KeyboardInterrupt):
        with local_platform.signals_held():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            done.append("recorded")
    assert done == ["recorded"]
    assert {sig: signal.getsignal(sig) for sig in local_platform.HELD_SIGNALS} == before
