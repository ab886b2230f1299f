"""Fixtures for the CLI tests: a temporary project directory, a CliRunner and a scripted HTTP server."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Dict, Iterator, List, NamedTuple, Optional, Tuple, Union
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import CliRunner

from tests.support.ports import free_port


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A fresh working directory: `.kaos` lands in it, USER is fixed, no state-dir override."""
    directory = tmp_path / "project"
    directory.mkdir()
    monkeypatch.chdir(directory)
    monkeypatch.delenv("KAOS_STATE_DIR", raising=False)
    monkeypatch.delenv("KAOS_DEBUG", raising=False)
    monkeypatch.setenv("USER", "tester")
    return directory


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def terminal(monkeypatch):
    """The CLI believes its stdout is a terminal (CliRunner's never is): progress bars are drawn on stderr."""
    monkeypatch.setattr("kaos_cli.output.stdout_is_terminal", lambda: True)


@pytest.fixture
def kaos(runner, project):
    """`kaos(*args, input=None)` runs the root group in the project directory and returns the result."""
    from kaos_cli.main import cli

    def run(*args, input=None, env=None):
        return runner.invoke(cli, list(args), input=input, env=env, catch_exceptions=False)

    return run


class Recorded(NamedTuple):
    method: str
    path: str
    query: Dict[str, List[str]]
    headers: Dict[str, str]
    body: bytes


Reply = Tuple[int, Union[dict, list, str, bytes, None], str]  # status, body, content type
Route = Union[Reply, Callable[[Recorded], Reply]]


class ScriptedServer:
    """A real HTTP server on 127.0.0.1 answering from `routes[(METHOD, path)]`; unknown routes answer
    404 NOT_FOUND JSON. Every request is recorded in `requests`. A reply whose body is an iterator (e.g. a
    generator) is streamed with chunked transfer encoding, one chunk per item as the iterator yields it."""

    def __init__(self):
        self.routes: Dict[Tuple[str, str], Route] = {}
        self.requests: List[Recorded] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                recorded = Recorded(self.command, parts.path, parse_qs(parts.query),
                                    {key.lower(): value for key, value in self.headers.items()}, body)
                server.requests.append(recorded)
                route = server.routes.get((self.command, parts.path))
                if route is None:
                    reply = (404, {"error_code": "NOT_FOUND", "message": f"No route {parts.path}"},
                             "application/json")
                elif callable(route):
                    reply = route(recorded)
                else:
                    reply = route
                status, payload, content_type = reply
                if isinstance(payload, Iterator):  # a streamed body: one HTTP chunk per item, sent as produced
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for piece in payload:
                        piece = piece.encode() if isinstance(piece, str) else piece
                        if piece:
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                            self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                    return
                if isinstance(payload, (dict, list)) or payload is None and content_type == "application/json":
                    data = json.dumps(payload).encode()
                elif isinstance(payload, str):
                    data = payload.encode()
                else:
                    data = payload or b""
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PUT = _handle

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def route(self, method: str, path: str, status: int = 200, body=None,
              content_type: str = "application/json") -> None:
        self.routes[(method, "/api/" + path.lstrip("/"))] = (status, body, content_type)

    def handle(self, method: str, path: str, handler: Callable[[Recorded], Reply]) -> None:
        self.routes[(method, "/api/" + path.lstrip("/"))] = handler

    def requests_to(self, method: str, path: str) -> List[Recorded]:
        return [r for r in self.requests if r.method == method and r.path == "/api/" + path.lstrip("/")]

    def start(self) -> "ScriptedServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def server():
    scripted = ScriptedServer().start()
    yield scripted
    scripted.stop()


def write_config(project_dir, text: str) -> None:
    state = project_dir / ".kaos"
    state.mkdir(exist_ok=True)
    (state / "config").write_text(text)


@pytest.fixture
def connected(project, server):
    """The project initialised against the scripted server (context `remote`, token `secret`)."""
    write_config(project, f"""[default]
user = tester

[contexts]
environments = remote

[active]
environment = remote

[context:remote]
url = {server.url}
token = secret
kind = remote
""")
    return server


@pytest.fixture
def ws(connected, project):
    """The connected server with workspace `mnist` current and known to the backend."""
    with open(project / ".kaos" / "config", "a") as config:
        config.write("\n[workspace]\nname = mnist\n")
    connected.route("GET", "workspace", body={"names": ["mnist"]})
    return connected


@pytest.fixture
def unused_port() -> int:
    return free_port()


def one_line(result) -> Optional[str]:
    """The single non-empty output line of a failed CliRunner result (asserts exit 1, no traceback)."""
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    assert len(lines) == 1, result.output
    return lines[0]
