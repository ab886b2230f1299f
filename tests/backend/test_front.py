"""The front door (kaos_backend.front) against small stand-in servers: routing, the gateway's answers, framing."""
import asyncio
import http.client
import json
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from kaos_backend.front import Front
from tests.support.backend import free_port


class Recorder(BaseHTTPRequestHandler):
    """Answers every request with what it received (as JSON); closes after each reply like the model server."""
    protocol_version = "HTTP/1.0"
    requests = []

    def _answer(self):
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if not size:
                    self.rfile.readline()
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
        else:
            body = self.rfile.read(int(length)) if length else b""
        record = {"method": self.command, "path": self.path, "headers": dict(self.headers.items()),
                  "header_lines": [f"{name}: {value}" for name, value in self.headers.items()],
                  "size": len(body), "start": body[:20].decode("latin-1")}
        type(self).requests.append(record)
        if self.path.startswith("/stream"):  # a chunked answer, as Flask's streamed responses get from gunicorn
            self.protocol_version = "HTTP/1.1"
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            self.end_headers()
            for part in (b"one ", b"two ", b"three"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
            return
        if self.path.startswith("/hangup"):
            self.close_connection = True
            return
        answer = json.dumps(record).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.send_header("Keep-Alive", "timeout=5")
        self.end_headers()
        self.wfile.write(answer)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, *args):
        pass


def serve(handler):
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def front():
    class Endpoint(Recorder):
        requests = []

    class Api(Recorder):
        requests = []

    endpoint, api = serve(Endpoint), serve(Api)
    refused = free_port()
    table = {"serve-ws-aaaaaa": ("PIPELINE_RUNNING", "127.0.0.1", endpoint.server_address[1]),
             "serve-ws-bbbbbb": ("PIPELINE_RESTARTING", "127.0.0.1", None),
             "serve-ws-cccccc": ("PIPELINE_RUNNING", "127.0.0.1", refused)}
    listener = socket.create_server(("127.0.0.1", 0))
    loop = asyncio.new_event_loop()
    proxy = Front(loop, ("127.0.0.1", api.server_address[1]), table.get)
    task = loop.create_task(proxy.serve(listener))

    def run():
        try:
            loop.run_until_complete(task)
        except asyncio.CancelledError:
            pass
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    yield port, Endpoint.requests, Api.requests
    loop.call_soon_threadsafe(task.cancel)
    thread.join(timeout=5)
    endpoint.shutdown()
    api.shutdown()


def call(connection, method, path, body=None, headers=None, **kwargs):
    connection.request(method, path, body=body, headers=headers or {}, **kwargs)
    response = connection.getresponse()
    return response, response.read()


def test_an_endpoint_gets_its_path_and_query_and_the_client_connection_stays_open(front):
    port, endpoint, api = front
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for number in range(3):  # one client connection, while the endpoint closes after every reply
        response, body = call(connection, "POST", f"/serve-ws-aaaaaa/invocations?n={number}&x=%2F", b"x" * 3000,
                              {"Content-Type": "image/jpeg", "Keep-Alive": "timeout=9", "X-Custom": "yes"})
        assert response.status == 201, body
        record = json.loads(body)
        assert record["path"] == f"/invocations?n={number}&x=%2F" and record["size"] == 3000
        assert record["headers"]["X-Custom"] == "yes" and "Keep-Alive" not in record["headers"]
        host = record["headers"]["Host"]
        assert host.startswith("127.0.0.1:") and host != f"127.0.0.1:{port}"  # the endpoint's own address
        assert response.getheader("Keep-Alive") is None  # hop-by-hop: not relayed either way
    assert len(endpoint) == 3 and api == []
    response, body = call(connection, "GET", "/serve-ws-aaaaaa")
    assert json.loads(body)["path"] == "/"
    connection.close()


def test_the_platform_token_is_not_relayed_to_an_endpoint_in_any_case(front):
    port, endpoint, api = front
    head = (b"POST /serve-ws-aaaaaa/invocations HTTP/1.1\r\nHost: x\r\nX-Token: secret-1\r\nx-token: secret-2\r\n"
            b"X-TOKEN: secret-3\r\nx-ToKeN:secret-4\r\nAuthorization: Bearer mine\r\nCookie: session=abc\r\n"
            b"X-Tokens: kept\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        answer = b""
        while True:  # Connection: close: the answer ends when the front closes
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    assert answer.startswith(b"HTTP/1.1 201 "), answer
    record = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert not [line for line in record["header_lines"] if line.lower().startswith("x-token:")]
    assert b"secret" not in answer
    assert record["headers"]["Authorization"] == "Bearer mine" and record["headers"]["Cookie"] == "session=abc"
    assert record["headers"]["X-Tokens"] == "kept" and record["size"] == 2
    # the API, whose token it is, still gets it
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    _, body = call(connection, "GET", "/api/workspace", headers={"X-Token": "secret-1"})
    assert json.loads(body)["headers"]["X-Token"] == "secret-1"
    assert len(endpoint) == 1 and len(api) == 1


def test_the_gateway_errors(front):
    port, _, _ = front
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    response, body = call(connection, "GET", "/serve-ws-ffffff/invocations")
    assert response.status == 404 and json.loads(body)["error_code"] == "PIPELINE_NOT_FOUND"
    response, body = call(connection, "POST", "/serve-ws-bbbbbb/invocations", b"{}")
    answer = json.loads(body)
    assert response.status == 503 and answer["error_code"] == "ENDPOINT_UNAVAILABLE"
    assert "(PIPELINE_RESTARTING)" in answer["message"] and "kaos serve logs -e serve-ws-bbbbbb" in answer["message"]
    response, body = call(connection, "POST", "/serve-ws-cccccc/invocations", b"{}")  # running, but refuses
    assert response.status == 503 and json.loads(body)["error_code"] == "ENDPOINT_UNAVAILABLE"
    response, body = call(connection, "POST", "/serve-ws-aaaaaa/hangup", b"{}")
    assert response.status == 502 and json.loads(body)["error_code"] == "ENDPOINT_ERROR"
    response, body = call(connection, "POST", "/serve-ws-aaaaaa/invocations", b"{}")  # the same connection
    assert response.status == 201


def test_everything_else_goes_to_the_api_as_it_came(front):
    port, endpoint, api = front
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    response, body = call(connection, "GET", "/api/workspace?x=1", headers={"X-Token": "t", "Host": "example:1"})
    record = json.loads(body)
    assert response.status == 201 and record["path"] == "/api/workspace?x=1"
    assert record["headers"]["X-Token"] == "t" and record["headers"]["Host"] == "example:1"
    big = bytes(range(256)) * (8 * 1024 * 20)  # 40 MiB, streamed
    response, body = call(connection, "POST", "/api/data/ws/features", big, {"Content-Type": "application/zip"})
    assert json.loads(body)["size"] == len(big)
    chunks = (big[start:start + 100000] for start in range(0, 1000000, 100000))
    response, body = call(connection, "POST", "/api/upload", chunks, {"Transfer-Encoding": "chunked"},
                          encode_chunked=True)
    assert json.loads(body)["size"] == 1000000
    response, body = call(connection, "GET", "/stream")
    assert response.status == 200 and body == b"one two three"
    assert response.getheader("Transfer-Encoding") == "chunked"
    assert len(api) == 4 and endpoint == []


def test_a_malformed_request_gets_a_json_400(front):
    port, _, _ = front
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /api/x HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n")
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 400 ") and b'"BAD_REQUEST"' in answer


def test_the_front_exits_when_its_parent_is_gone(tmp_path):
    parent = (
        "import socket, subprocess, sys\n"
        "listener = socket.create_server(('127.0.0.1', 0))\n"
        "child = subprocess.Popen([sys.executable, '-m', 'kaos_backend.front', '--fd', str(listener.fileno()),"
        f" '--api', {str(tmp_path / 'api.sock')!r}, '--parent', str(__import__('os').getpid())],"
        f" pass_fds=(listener.fileno(),), env=dict(__import__('os').environ, KAOS_DATABASE_URL='sqlite:///{tmp_path}/kaos.db'))\n"
        "print(child.pid, flush=True)\n"
        "import time; time.sleep(1)\n"
    )
    result = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True, timeout=30)
    pid = int(result.stdout.strip())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                if handle.read().split(")")[1].split()[0] == "Z":
                    break
        except FileNotFoundError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the front process outlived its parent")


def test_pipelined_requests_are_answered_in_order(front):
    port, endpoint, api = front
    requests = b"".join(b"GET /serve-ws-aaaaaa/n%d HTTP/1.1\r\nHost: x\r\n\r\n" % number for number in range(3))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(requests + b"GET /api/last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b""
        while True:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    paths = [json.loads(part.split(b"\r\n\r\n", 1)[1].split(b"HTTP/1.1")[0])["path"]
             for part in answer.split(b"HTTP/1.1 201 ")[1:]]
    assert paths == ["/n0", "/n1", "/n2", "/api/last"]
    assert len(endpoint) == 3 and len(api) == 1
