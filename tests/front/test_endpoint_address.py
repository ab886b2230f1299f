"""The front reaches an endpoint at the address its row holds (host, port, socket: what the executor's start()
returned), never at an address it assumes; a running row without a host is an endpoint not running yet (503)."""
import asyncio
import http.server
import socket
import threading
import time
from contextlib import contextmanager

import pytest
import requests

from kaos_backend.db import Database
from kaos_backend.front import Front
from kaos_backend.front.config import FrontConfig
from kaos_backend.front.endpoints import endpoint_lookup
from kaos_backend.models import Endpoint, Job, Workspace

NAME = "serve-ws-abcdef"
HOST = "127.0.0.2"  # loopback too on Linux, but not the 127.0.0.1 an executor's workload used to be assumed at


class Which(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # kept alive: the express lane's (it takes a pooled connection)

    def do_GET(self):
        body = f"{self.server.server_address[0]} {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextmanager
def serving(host: str):
    server = http.server.ThreadingHTTPServer((host, 0), Which)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def write_row(url: str, **columns) -> None:
    database = Database(url)
    with database.session_scope() as session:
        if session.get(Workspace, 1) is None:
            session.add(Workspace(id=1, name="ws", user="u"))
            session.flush()
        row = session.query(Endpoint).filter_by(name=NAME).first()
        if row is None:
            session.add(Endpoint(name=NAME, workspace_id=1, user="u", **columns))
        else:
            for column, value in columns.items():
                setattr(row, column, value)
    database.dispose()


@contextmanager
def running_front(url: str, config: FrontConfig = None):
    """A front on 127.0.0.1 looking endpoints up in `url`'s database; yields its port and the errors that reached
    its loop's exception handler (a bug: none may)."""
    listener = socket.create_server(("127.0.0.1", 0))
    loop = asyncio.new_event_loop()
    errors = []
    loop.set_exception_handler(lambda loop, context: errors.append(context))
    front = Front(loop, ("127.0.0.1", 1), endpoint_lookup(url), config)
    task = loop.create_task(front.serve(listener))
    thread = threading.Thread(target=lambda: loop.run_until_complete(asyncio.wait([task])), daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], errors
    finally:
        loop.call_soon_threadsafe(task.cancel)
        thread.join(timeout=10)


def test_the_front_reaches_an_endpoint_at_the_host_and_port_of_its_row(tmp_path):
    url = f"sqlite:///{tmp_path / 'kaos.db'}"
    with serving(HOST) as server:
        write_row(url, state="PIPELINE_RUNNING", host=HOST, port=server.server_address[1])
        assert endpoint_lookup(url)(NAME) == ("PIPELINE_RUNNING", HOST, server.server_address[1], None, None)
        with running_front(url) as (port, errors):
            answer = requests.get(f"http://127.0.0.1:{port}/{NAME}/invocations", timeout=30)
            assert (answer.status_code, answer.text) == (200, f"{HOST} /invocations")
            assert not errors, errors


@pytest.mark.parametrize("lane", [True, False], ids=["lane", "no-lane"])
def test_a_running_row_without_a_host_is_not_running_yet(tmp_path, lane):
    """503 as for a starting endpoint, on a new connection (the lookup) and on a kept-alive one (the cached
    address: the express lane's, when it is on), and no crash: `host.encode()` on None raised in the general path
    (the client never answered) and in the lane (the connection dropped). Once the host is written, the endpoint
    is reached."""
    url = f"sqlite:///{tmp_path / 'kaos.db'}"
    with serving("127.0.0.1") as server:
        write_row(url, state="PIPELINE_RUNNING", host=None, port=server.server_address[1])
        assert endpoint_lookup(url)(NAME)[2] is None
        with running_front(url, FrontConfig(express=lane, endpoint_cache_seconds=0.2)) as (port, errors):
            target = f"http://127.0.0.1:{port}/{NAME}/invocations"
            with requests.Session() as session:
                for _ in range(3):
                    answer = session.get(target, timeout=10)
                    assert answer.status_code == 503, answer.text
                    assert answer.json()["error_code"] == "ENDPOINT_UNAVAILABLE"
            write_row(url, host="127.0.0.1")
            deadline = time.monotonic() + 10  # the address not running is looked up again after 0.2 s
            while requests.get(target, timeout=10).status_code == 503 and time.monotonic() < deadline:
                time.sleep(0.1)
            with requests.Session() as session:
                for _ in range(3):  # the lane's too, once a kept-alive connection is pooled
                    answer = session.get(target, timeout=10)
                    assert (answer.status_code, answer.text) == (200, "127.0.0.1 /invocations")
            assert not errors, errors


def _build(url: str, job_id: str, state: str) -> None:
    database = Database(url)
    with database.session_scope() as session:
        row = session.get(Job, job_id)
        if row is None:
            session.add(Job(id=job_id, workspace_id=1, kind="build-serve", state=state, user="u"))
        else:
            row.state = state
    database.dispose()


def test_the_503_of_an_endpoint_waiting_for_its_image_points_at_the_build_log(tmp_path):
    """While the endpoint waits for its build (or that build failed), its own log is empty: the 503 names
    `kaos serve build-logs -j <id>`; once its image is built, `kaos serve logs -e <name>`."""
    url = f"sqlite:///{tmp_path / 'kaos.db'}"
    build = "b" * 32
    write_row(url, state="PIPELINE_STARTING", build_job_id=build)
    _build(url, build, "JOB_RUNNING")
    assert endpoint_lookup(url)(NAME) == ("PIPELINE_STARTING", None, None, None, build)
    with running_front(url, FrontConfig(endpoint_cache_seconds=0.1)) as (port, errors):
        def message():
            time.sleep(0.2)  # past the cached answer
            answer = requests.post(f"http://127.0.0.1:{port}/{NAME}/invocations", data=b"{}", timeout=10)
            assert answer.status_code == 503, answer.text
            return answer.json()["message"]
        assert message() == (f"Endpoint {NAME} is not accepting connections (PIPELINE_STARTING): see kaos serve "
                             f"build-logs -j {build}")
        _build(url, build, "JOB_FAILURE")
        write_row(url, state="PIPELINE_FAILURE", reason=f"the serve image could not be built: see kaos serve "
                                                        f"build-logs -j {build}")
        assert message().endswith(f"see kaos serve build-logs -j {build}")
        _build(url, build, "JOB_SUCCESS")
        write_row(url, state="PIPELINE_STARTING", reason="waiting to be ready: it does not accept connections yet",
                  host="127.0.0.1")
        assert message().endswith(f"see kaos serve logs -e {NAME}")
        assert not errors, errors
