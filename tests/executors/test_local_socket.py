"""The local executor offers a serve workload a unix socket (KAOS_SOCKET): short, its own, reachable from the
backend's side of the sandbox, and gone once the workload ends."""
import os
import sys
import time

from kaos_backend.config import platform_id
from kaos_backend.control.endpoints import ping_status
from kaos_backend.executors import sockets
from kaos_backend.executors.local_process import ProcessSpec
from kaos_backend.executors.local import LocalExecutor

NAME = "serve-ws-abcdef"
WAIT_LIMIT = 30.0  # a bound against hanging, never a speed claim

# Answers every GET on the unix socket it was offered (and prints that path and whether it saw KAOS_SOCKET).
UNIX_SERVER = """
import http.server, os, socketserver, sys
path = os.environ.get("KAOS_SOCKET")
print("socket:", path, flush=True)
if not path:
    sys.exit(3)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


socketserver.UnixStreamServer(path, Handler).serve_forever()
"""


def _spec(tmp_path, command, kind="serve", where="x" * 80):
    job_dir = tmp_path / "data" / "endpoints" / where / NAME  # by default, a data directory too deep for sun_path
    work = job_dir / "work"
    work.mkdir(parents=True, exist_ok=True)
    return ProcessSpec(job_id=NAME, kind=kind, command=command, workdir=str(work), log=f"endpoints/{where}")


def _wait_for(predicate):
    deadline = time.monotonic() + WAIT_LIMIT
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def _log(executor):
    return "\n".join(executor.logs())


def test_a_serve_workload_is_reached_on_its_socket_and_the_socket_goes_when_it_is_stopped(tmp_path):
    executor = LocalExecutor(tmp_path / "data")
    path = executor.launch(_spec(tmp_path, [sys.executable, "-c", UNIX_SERVER])).socket
    assert os.path.dirname(os.path.dirname(path)) == str(sockets.socket_root())
    assert len(path.encode()) <= sockets.MAX_PATH and not path.startswith(str(tmp_path))
    try:
        _wait_for(lambda: ping_status("127.0.0.1", 1, unix=path) == 200)  # made in the sandbox, reached from here
        assert f"socket: {path}" in _log(executor)
    finally:
        executor.stop()
    assert not os.path.exists(path) and not os.path.exists(os.path.dirname(path))


def test_the_socket_goes_when_the_workload_ends_by_itself(tmp_path):
    executor = LocalExecutor(tmp_path / "data")
    script = ("import os, socket\n"
              "listener = socket.socket(socket.AF_UNIX)\n"
              "listener.bind(os.environ['KAOS_SOCKET'])\n"
              "print('bound', flush=True)\n")
    path = executor.launch(_spec(tmp_path, [sys.executable, "-c", script])).socket
    _wait_for(lambda: executor.poll() is not None)
    assert "bound" in _log(executor)
    assert executor.poll() == 0 and not os.path.exists(os.path.dirname(path))


def test_a_new_executor_instance_finds_the_socket_and_removes_it(tmp_path):
    first = LocalExecutor(tmp_path / "data")
    path = first.launch(_spec(tmp_path, [sys.executable, "-c", UNIX_SERVER])).socket
    _wait_for(lambda: os.path.exists(path))
    second = LocalExecutor(tmp_path / "data")
    second.load_state(first.get_state())
    second.stop()
    _wait_for(lambda: first.poll() is not None)
    assert not os.path.exists(os.path.dirname(path))


def test_only_serve_workloads_are_offered_a_socket(tmp_path):
    executor = LocalExecutor(tmp_path / "data")
    assert executor.launch(_spec(tmp_path, [sys.executable, "-c", UNIX_SERVER], kind="train")) is None
    _wait_for(lambda: executor.poll() is not None)
    assert executor.poll() == 3 and "socket: None" in _log(executor)


def test_two_backends_or_two_starts_never_share_a_socket_directory(tmp_path):
    paths = [sockets.socket_path(platform_id(tmp_path / name), NAME, start)
             for name, start in (("a", "1"), ("b", "1"), ("a", "2"))]
    assert len({path.parent for path in paths}) == 3 and {path.name for path in paths} == {sockets.SOCKET_NAME}
    assert {path.parent.parent for path in paths} == {sockets.socket_root()}


def test_a_restart_gets_a_socket_directory_of_its_own(tmp_path):
    executor = LocalExecutor(tmp_path / "data")
    first = executor.launch(_spec(tmp_path, [sys.executable, "-c", UNIX_SERVER])).socket
    _wait_for(lambda: os.path.exists(first))
    again = LocalExecutor(tmp_path / "data")
    second = again.launch(_spec(tmp_path, [sys.executable, "-c", UNIX_SERVER], where="again")).socket
    try:
        assert second != first
        _wait_for(lambda: os.path.exists(second))
        executor.stop()  # the first start, stopped: the second's socket stays
        assert not os.path.exists(first) and ping_status("127.0.0.1", 1, unix=second) == 200
    finally:
        again.stop()
