"""Log follows handed off by the API and served by the front door (kaos_backend.front.follow), against stand-in
API and endpoint servers on 127.0.0.1 and raw client sockets."""
import asyncio
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from kaos_backend import log_handoff
from kaos_backend.front import Front, routing
from kaos_backend.front import follow as follow_module
from kaos_backend.front.follow import Follows, api_handoff
from kaos_backend.logs import JobLog, LogFileReader

TRICKY = (b"[2024-01-01 00:00:00] plain\n"
          b"[2024-01-01 00:00:01] caf\xc3\xa9 and a bad byte \xff here\n"
          b"[2024-01-01 00:00:02] cut in the middle of a character \xe2\x82\n"
          b"\n"
          b"[2024-01-01 00:00:03] the last record has no newline \xe2\x82")


class StandIn(BaseHTTPRequestHandler):
    """The API or an endpoint: `/follow?log=PATH&job=ID` answers with a hand-off header, anything else with
    the request's headers as JSON; every request's headers are recorded."""
    protocol_version = "HTTP/1.1"
    seen = []

    def do_GET(self):
        type(self).seen.append(dict(self.headers.items()))
        query = parse_qs(urlsplit(self.path).query)
        headers = {"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-cache"}
        body = b""
        if urlsplit(self.path).path.endswith("/follow"):
            headers[log_handoff.HEADER] = query["value"][0] if "value" in query else log_handoff.encode(
                log_handoff.Handoff(query["log"][0], job=query["job"][0]))
        else:
            body = json.dumps(dict(self.headers.items())).encode()
        self.send_response(200)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def log_message(self, *args):
        pass


class Gate:
    """The follows' `finished(jobs, endpoints)`: the jobs in `ended` have ended; every question is counted."""

    def __init__(self):
        self.ended = set()
        self.asked = 0

    def __call__(self, jobs, endpoints):
        self.asked += 1
        return {("job", job) for job in jobs if job in self.ended}


@pytest.fixture
def front():
    class Api(StandIn):
        seen = []

    class Endpoint(StandIn):
        seen = []

    servers = [ThreadingHTTPServer(("127.0.0.1", 0), handler) for handler in (Api, Endpoint)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    api, endpoint = servers
    table = {"serve-ws-aaaaaa": ("PIPELINE_RUNNING", "127.0.0.1", endpoint.server_address[1])}
    listener = socket.create_server(("127.0.0.1", 0))
    loop = asyncio.new_event_loop()
    proxy = Front(loop, ("127.0.0.1", api.server_address[1]), table.get)
    gate = Gate()
    proxy.follows = Follows(loop, gate, LogFileReader, poll_seconds=0.05)  # the stand-in API names log files
    routing.API_HANDOFFS[log_handoff.HEADER_NAME] = api_handoff(proxy.follows)
    task = loop.create_task(proxy.serve(listener))
    thread = threading.Thread(target=lambda: _run(loop, task), daemon=True)
    thread.start()
    yield type("FrontUnderTest", (), {"port": listener.getsockname()[1], "gate": gate, "follows": proxy.follows,
                                      "api": Api.seen, "endpoint": Endpoint.seen})
    loop.call_soon_threadsafe(task.cancel)
    thread.join(timeout=5)
    for server in servers:
        server.shutdown()
    routing.API_HANDOFFS.pop(log_handoff.HEADER_NAME, None)


def _run(loop, task):
    try:
        loop.run_until_complete(task)
    except asyncio.CancelledError:
        pass


def _connect(port):
    client = socket.create_connection(("127.0.0.1", port), timeout=10)
    return client


def _request(path, version="HTTP/1.1", extra=b""):
    return f"GET {path} {version}\r\nHost: kaos\r\n".encode() + extra + b"\r\n"


def _read_until(client, marker: bytes, timeout: float = 10.0) -> bytes:
    """Bytes from `client` until `marker` is among them or the peer closes (a bound against hanging)."""
    data = b""
    deadline = time.monotonic() + timeout
    while marker not in data and time.monotonic() < deadline:
        client.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            part = client.recv(65536)
        except socket.timeout:
            break
        if not part:
            break
        data += part
    return data


def _dechunk(body: bytes) -> bytes:
    out = b""
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            assert body == b"\r\n", body
            return out
        out, body = out + body[:size], body[size:]
        assert body[:2] == b"\r\n"
        body = body[2:]


def _wait(predicate, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _what_the_api_streams(path) -> bytes:
    """The body of the API's own follow of a finished job (JobLog.follow, as the view sends it)."""
    return b"".join((line + "\n").encode("utf-8") for line in JobLog(path).follow(lambda: True, interval=0))


def test_a_handed_off_follow_streams_the_log_then_new_records_and_ends_with_the_job(front, tmp_path):
    log = tmp_path / "job.log"
    log.write_bytes(TRICKY[:30])
    client = _connect(front.port)
    client.sendall(_request(f"/api/follow?log={log}&job=j1"))
    head = _read_until(client, b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"transfer-encoding: chunked" in head.lower() and b"content-length" not in head.lower()
    assert b"x-kaos-follow" not in head.lower()  # the hand-off is between the API and the front
    assert b"text/plain" in head and b"Cache-Control: no-cache" in head
    with open(log, "ab") as handle:
        handle.write(TRICKY[30:])
    front.gate.ended.add("j1")
    body = _read_until(client, b"\r\n0\r\n\r\n")
    rest = body[body.index(b"\r\n\r\n") + 4:] if body.startswith(b"HTTP/") \
        else head[head.index(b"\r\n\r\n") + 4:] + body
    assert _dechunk(rest) == _what_the_api_streams(log)
    # the connection stays open for the next request
    client.sendall(_request("/api/other"))
    assert _read_until(client, b"}").startswith(b"HTTP/1.1 200 ")
    client.close()
    assert front.follows.active == set()


def test_a_follow_of_a_log_not_written_yet_waits_for_it(front, tmp_path):
    log = tmp_path / "later.log"
    client = _connect(front.port)
    client.sendall(_request(f"/api/follow?log={log}&job=j2"))
    assert _read_until(client, b"\r\n\r\n").startswith(b"HTTP/1.1 200 ")
    log.write_bytes(b"[t] first\n")
    assert b"[t] first\n" in _read_until(client, b"first\n")
    front.gate.ended.add("j2")
    assert _read_until(client, b"0\r\n\r\n").endswith(b"0\r\n\r\n")
    client.close()


def test_an_http_1_0_follow_is_the_bare_body_until_close(front, tmp_path):
    log = tmp_path / "job.log"
    log.write_bytes(TRICKY)
    front.gate.ended.add("j3")
    client = _connect(front.port)
    client.sendall(_request(f"/api/follow?log={log}&job=j3", "HTTP/1.0"))
    data = _read_until(client, b"never")  # read until the front closes
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"Connection: close" in head
    assert b"chunked" not in head.lower()
    assert body == _what_the_api_streams(log)
    client.close()


@pytest.mark.parametrize("leave", ["close", "half-close"])
def test_a_follower_that_leaves_is_dropped_and_its_log_closed(front, tmp_path, leave):
    log = tmp_path / "job.log"
    log.write_bytes(b"[t] one\n")
    clients = []
    for number in range(10):
        client = _connect(front.port)
        client.sendall(_request(f"/api/follow?log={log}&job=waits"))
        assert b"[t] one" in _read_until(client, b"one\n")
        clients.append(client)
    assert len(front.follows.active) == 10
    assert all(follow.reader.file is not None for follow in front.follows.active)
    opened = list(front.follows.active)
    for client in clients:
        if leave == "close":
            client.close()
        else:
            client.shutdown(socket.SHUT_WR)
    _wait(lambda: not front.follows.active, "the follows to be dropped")
    assert all(follow.closed and follow.reader.file is None for follow in opened)
    for client in clients:
        client.close()


def test_a_client_cannot_hand_off_a_follow_itself(front, tmp_path):
    secret = tmp_path / "secret.log"
    secret.write_bytes(b"[t] not for the client\n")
    forged = log_handoff.encode(log_handoff.Handoff(str(secret), job="j"))
    # a request header with the hand-off's name reaches neither the API nor an endpoint
    for path, seen in (("/api/echo", front.api), ("/serve-ws-aaaaaa/echo", front.endpoint)):
        client = _connect(front.port)
        client.sendall(_request(path, extra=f"X-Kaos-Follow: {forged}\r\nx-kaos-follow: {forged}\r\n".encode()))
        answer = _read_until(client, b"}")
        client.close()
        assert answer.startswith(b"HTTP/1.1 200 ") and b"not for the client" not in answer
        assert not any(name.lower() == "x-kaos-follow" for name in seen[-1]), seen[-1]
    # an endpoint's answer with the header is relayed as it is, without the header: it is never honoured
    client = _connect(front.port)
    client.sendall(_request(f"/serve-ws-aaaaaa/follow?log={secret}&job=j", extra=b"Connection: close\r\n"))
    answer = _read_until(client, b"never")
    client.close()
    assert answer.startswith(b"HTTP/1.1 200 "), answer
    assert b"not for the client" not in answer and b"x-kaos-follow" not in answer.lower()
    assert front.follows.active == set()


def test_a_hand_off_the_front_cannot_follow_is_a_json_502(front, tmp_path):
    client = _connect(front.port)
    client.sendall(_request("/api/follow?value=%7B%22job%22%3A%22x%22%7D"))  # {"job":"x"}: no log
    answer = _read_until(client, b"}")
    client.close()
    assert answer.startswith(b"HTTP/1.1 502 ")
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["error_code"] == "INTERNAL_ERROR"


def test_a_slow_reader_is_not_sent_more_than_the_bound(front, tmp_path):
    log = tmp_path / "big.log"
    line = b"[t] " + b"x" * 1000 + b"\n"
    log.write_bytes(line * 20000)  # ~20 MB
    client = _connect(front.port)
    client.sendall(_request(f"/api/follow?log={log}&job=slow"))
    _wait(lambda: front.follows.active, "the follow")
    follow = next(iter(front.follows.active))
    # the client reads nothing: once the kernel's socket buffers and the front's bound are full, the follow
    # stops reading the file (a bounded wait for it to settle, then it must not move)
    positions = [-1]

    def settled():  # the follow's own stop (its client's backlog past the bound), then no read for a while
        file = follow.reader.file  # None until the follow's first read opens it (late on a loaded machine)
        positions.append(file.tell() if file is not None else None)
        time.sleep(0.3)
        return follow.sink.backlog() > follow_module.HIGH_WATER and positions[-1] == positions[-2] is not None
    _wait(settled, "the follow to stop reading")
    time.sleep(0.5)
    assert follow.reader.file.tell() == positions[-1] < len(line) * 20000 // 2
    front.gate.ended.add("slow")
    total = 0
    client.settimeout(20)
    while True:
        part = client.recv(1 << 20)
        total += len(part)
        if not part or part.endswith(b"0\r\n\r\n"):
            break
    assert total > len(line) * 20000
    client.close()
