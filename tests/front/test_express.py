"""The express lane (kaos_backend/front/express.py) changes nothing but the cost: every request of a corpus, sent
through a front with the lane and through one without it, gives the client the same bytes and the endpoint the
same bytes. The corpus covers what the lane takes (a plain request and a plain response, whole or in two reads)
and everything it must leave to the general path, before it starts (framing, Connection tokens, versions, bad
targets, pipelining, bounds) or after (a response it hands over: 1xx, chunked, close-delimited, large, late,
stray bytes, no answer, the server closing). Spies record which requests the lane took and handed over, so a
lane that silently declined everything would fail too."""
import asyncio
import socket
import threading
import time
from typing import Dict, List

import httptools
import pytest

from kaos_backend.front import express, routing
from kaos_backend.front.express_response import EXPRESS_RESPONSE_BYTES
from kaos_backend.front.config import FrontConfig
from kaos_backend.front.server import Front

NAME = "serve-ws-aaaaaa"
HANDOFF = b"x-test-handoff"   # a hand-off header name (as the log follows register one): never from an endpoint
LARGE = b"L" * (EXPRESS_RESPONSE_BYTES + 10)


def response(body: bytes = b'{"ok": true}', extra: bytes = b"", status: bytes = b"200 OK") -> bytes:
    return (b"HTTP/1.1 " + status + b"\r\nServer: test\r\nContent-Type: application/json\r\n" + extra
            + b"Content-Length: %d\r\n\r\n" % len(body) + body)


class Upstream:
    """A keep-alive HTTP/1.1 server on a unix socket whose answer depends on the path (see `answer`); it records
    the bytes of every request it reads, in order, and the connections that reached their end."""

    def __init__(self, path: str):
        self.path = path
        self.requests: List[bytes] = []
        self.closed = 0
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(path)
        self.server.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket):
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = connection.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, _, rest = buffer.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(rest) < length:
                    data = connection.recv(65536)
                    if not data:
                        return
                    rest += data
                request, buffer = head + b"\r\n\r\n" + rest[:length], rest[length:]
                self.requests.append(request)
                if not self.answer(connection, request.split(b" ")[1]):
                    return
        except OSError:
            return
        finally:
            self.closed += 1
            connection.close()

    @staticmethod
    def answer(connection: socket.socket, path: bytes) -> bool:
        """Answer `path`; False when the connection is to be closed."""
        send = connection.sendall
        if path.startswith(b"/plain") or path.startswith(b"/echo"):
            send(response())
        elif path == b"/split":       # the head, then the body in a second write (within the hold)
            whole = response(b'{"split": 1}')
            send(whole[:-12])
            time.sleep(0.005)
            send(whole[-12:])
        elif path == b"/late":        # the body long after the head (past the hold: the head goes out alone)
            whole = response(b'{"late": 1}')
            send(whole[:-11])
            time.sleep(0.4)
            send(whole[-11:])
        elif path == b"/late-stray":  # ... and bytes after it
            whole = response(b'{"late": 2}')
            send(whole[:-11])
            time.sleep(0.3)
            send(whole[-11:] + b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray")
        elif path == b"/late-cut":    # ... and the connection closed halfway through the body
            send(response(b'{"late": 3}')[:-5])
            time.sleep(0.3)
            return False
        elif path == b"/late-stall":  # ... and the rest of the body later than the read timeout
            whole = response(b'{"late": 4}')
            send(whole[:-11])
            time.sleep(0.3)
            send(whole[-11:-5])
            time.sleep(1.6)
            return False
        elif path == b"/chunked":
            send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        elif path == b"/gzip-chunked":  # a transfer coding the front cannot relay (its framing would go, the
            send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")  # coding too)
        elif path == b"/until-close":
            send(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nthe body ends with the connection")
            return False
        elif path == b"/no-content":
            send(b"HTTP/1.1 204 No Content\r\nServer: test\r\n\r\n")
        elif path == b"/not-modified":
            send(b"HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n")
        elif path == b"/continue":
            send(b"HTTP/1.1 100 Continue\r\n\r\n" + response(b"after 100"))
        elif path == b"/named":       # Connection names a header: both go
            send(response(extra=b"Connection: X-Hop\r\nX-Hop: 1\r\nX-Kept: 2\r\n"))
        elif path == b"/hop":
            send(response(extra=b"Keep-Alive: timeout=5\r\nConnection: keep-alive\r\nTrailer: x\r\n"))
        elif path == b"/handoff":
            send(response(extra=HANDOFF + b": /api/secret\r\n"))
        elif path == b"/large":
            send(response(LARGE))
        elif path == b"/close":
            send(response(extra=b"Connection: close\r\n"))
            return False
        elif path == b"/stray":       # a second response nobody asked for, in the same write
            send(response() + b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray")
        elif path == b"/no-reason":
            send(b"HTTP/1.1 200 \r\nContent-Length: 2\r\n\r\nok")
        elif path == b"/teapot":
            send(response(b"short and stout", status=b"418 I'm a teapot"))
        elif path == b"/many-headers":
            send(response(extra=b"".join(b"X-H%d: %d\r\n" % (n, n) for n in range(150))))
        elif path == b"/bad":
            send(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd")
        elif path == b"/drop":        # closes without an answer
            return False
        elif path == b"/silent":      # never answers (the front's read timeout)
            time.sleep(3)
            return False
        else:
            send(response(b"unknown path", status=b"404 Not Found"))
        return True

    def close(self):
        self.server.close()


class RunningFront:
    def __init__(self, tmp_path, lane: bool):
        self.upstream = Upstream(str(tmp_path / f"endpoint-{int(lane)}.sock"))
        config = FrontConfig(head_hold_seconds=0.05, proxy_read_timeout=1.0, serve_max_body_mb=1, max_headers=20,
                             max_head_bytes=4096, max_header_field_bytes=1024, max_target_bytes=512,
                             endpoint_cache_seconds=600, upstream_keepalive_timeout=60, express=lane)
        address = ("PIPELINE_RUNNING", "127.0.0.1", 8080, self.upstream.path)
        self.loop = asyncio.new_event_loop()
        self.errors: List[dict] = []  # what reached the loop's exception handler (a bug: none may)
        self.loop.set_exception_handler(lambda loop, context: self.errors.append(context))
        self.front = Front(self.loop, "/nonexistent/api.sock", {NAME: address}.get, config)
        listener = socket.create_server(("127.0.0.1", 0))
        self.port = listener.getsockname()[1]
        self.task = self.loop.create_task(self.front.serve(listener))
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            self.loop.run_until_complete(self.task)
        except asyncio.CancelledError:
            pass

    def trust_again(self):
        """Forget a distrusted endpoint (a case with stray bytes makes its server distrusted for a minute)."""
        async def clear():
            self.front.pool.distrusted.clear()
        asyncio.run_coroutine_threadsafe(clear(), self.loop).result(timeout=5)

    def stop(self):
        self.loop.call_soon_threadsafe(self.task.cancel)
        self.thread.join(timeout=5)
        self.upstream.close()


def request(path: bytes, method: bytes = b"GET", body: bytes = b"", headers: bytes = b"",
            version: bytes = b"1.1", host: bytes = b"Host: front\r\n") -> bytes:
    length = b"Content-Length: %d\r\n" % len(body) if body or method == b"POST" else b""
    return (method + b" /" + NAME.encode() + path + b" HTTP/" + version + b"\r\n" + host + headers + length
            + b"\r\n" + body)


PLAIN = request(b"/plain")
# name: (the bytes sent after a warm-up request on the same connection, the lane takes it, it hands it over)
CORPUS: Dict[str, tuple] = {
    "get": (PLAIN, True, False),
    "post with a body": (request(b"/echo", b"POST", b"x" * 3000, b"Content-Type: image/jpeg\r\n"), True, False),
    "post without a body": (request(b"/echo", b"POST"), True, False),
    "put without a body": (request(b"/echo", b"PUT"), True, False),
    "delete": (request(b"/echo", b"DELETE"), True, False),
    "query kept": (request(b"/echo?n=1&x=%2F&y=%2e%2e"), True, False),
    "leading slashes of the rest collapsed": (request(b"//echo"), True, False),
    "connection keep-alive": (request(b"/plain", headers=b"Connection: keep-alive\r\n"), True, False),
    "hop-by-hop and platform headers dropped": (request(b"/echo", headers=b"Keep-Alive: 5\r\nTE: trailers\r\n"
                                                        b"X-Token: secret\r\nProxy-Authorization: x\r\n"
                                                        b"Upgrade: websocket\r\nX-Test-Handoff: /x\r\n"), True, False),
    "forwarding headers: the client's extended or replaced": (request(b"/echo", headers=(
        b"X-Forwarded-For: 10.0.0.1\r\nX-Real-IP: 6.6.6.6\r\nx-forwarded-for: 10.0.0.2, 10.0.0.3\r\n"
        b"X-Forwarded-Proto: https\r\n")), True, False),
    "head in two reads": (request(b"/split"), True, False),
    "status without a reason": (request(b"/no-reason"), True, False),
    "other statuses": (request(b"/teapot"), True, False),
    "connection-named response header": (request(b"/named"), True, True),
    "hop-by-hop response headers": (request(b"/hop"), True, False),
    "hand-off header from an endpoint": (request(b"/handoff"), True, False),
    "endpoint closes after answering": (request(b"/close"), True, False),
    "not found at the endpoint": (request(b"/nowhere"), True, False),
    # handed over after the request went
    "late body": (request(b"/late"), True, False),
    "late body and stray bytes": (request(b"/late-stray"), True, False),
    "late body cut short": (request(b"/late-cut"), True, False),
    "late body stalled": (request(b"/late-stall"), True, False),
    "chunked response": (request(b"/chunked"), True, True),
    "close-delimited response": (request(b"/until-close"), True, True),
    "transfer coding other than chunked in the response": (request(b"/gzip-chunked"), True, True),
    "204": (request(b"/no-content"), True, True),
    "304": (request(b"/not-modified"), True, True),
    "100 then 200": (request(b"/continue"), True, True),
    "large response": (request(b"/large"), True, True),
    "stray bytes after the response": (request(b"/stray"), True, True),
    "too many response headers": (request(b"/many-headers"), True, True),
    "bad response framing": (request(b"/bad"), True, True),
    "get dropped unanswered": (request(b"/drop"), True, True),
    "post dropped unanswered": (request(b"/drop", b"POST", b"once"), True, True),
    "no answer": (request(b"/silent"), True, True),
    # the general path's from the start
    "connection close": (request(b"/plain", headers=b"Connection: close\r\n"), False, False),
    "connection naming a header": (request(b"/echo", headers=b"Connection: X-Hop\r\nX-Hop: 1\r\n"), False, False),
    "http/1.0": (request(b"/plain", version=b"1.0"), False, False),
    "http/1.0 keep-alive": (request(b"/plain", version=b"1.0", headers=b"Connection: keep-alive\r\n"), False, False),
    "chunked request": (request(b"/echo", b"POST", headers=b"Transfer-Encoding: chunked\r\n")
                        + b"5\r\nhello\r\n0\r\n\r\n", False, False),
    "expect 100-continue": (request(b"/echo", b"POST", b"body", b"Expect: 100-continue\r\n"), False, False),
    "head": (request(b"/plain", b"HEAD"), False, False),
    "websocket upgrade": (request(b"/plain", headers=b"Connection: Upgrade\r\nUpgrade: websocket\r\n"), False, False),
    "pipelined": (PLAIN + PLAIN, False, False),
    "no host": (request(b"/plain", host=b""), False, False),
    "two hosts": (request(b"/plain", host=b"Host: a\r\nHost: b\r\n"), False, False),
    "percent-encoded dot segment": (request(b"/%2e%2e/api/workspace"), False, False),
    "dot segment": (request(b"/a/../../api/workspace"), False, False),
    "backslash": (request(b"/a\\..\\x"), False, False),
    "too many headers": (request(b"/plain", headers=b"".join(b"X-%d: 1\r\n" % n for n in range(30))), False, False),
    "a header too large": (request(b"/plain", headers=b"X-Big: " + b"b" * 2000 + b"\r\n"), False, False),
    "a head too large": (request(b"/plain", headers=b"".join(b"X-%d: %s\r\n" % (n, b"h" * 400)
                                                           for n in range(12))), False, False),
    "a target too long": (request(b"/plain?" + b"q" * 600), False, False),
    "a body too large": (request(b"/echo", b"POST", b"b" * (1024 * 1024 + 1)), False, False),
    "unknown endpoint": (b"GET /serve-ws-zzzzzz/plain HTTP/1.1\r\nHost: front\r\n\r\n", False, False),
    "a nul in a header": (request(b"/plain", headers=b"X-A: a\x00b\r\n"), False, False),
    "lf-only lines": (b"GET /" + NAME.encode() + b"/plain HTTP/1.1\nHost: front\n\n", False, False),
}
EXPECTED_READS = {"pipelined": 2}
IDLE_READS = {"head"}  # a HEAD's response has no body: read until quiet, not parsed


def read_responses(sock: socket.socket, count: int, parse: bool = True) -> bytes:
    """The bytes of `count` final responses (or until the connection closes, or 3 s pass): a 100 Continue is not
    counted (the answer after it is what a case compares)."""
    done = []

    class Sink:
        def on_message_complete(self):
            if parser.get_status_code() >= 200:
                done.append(1)
    parser = httptools.HttpResponseParser(Sink())
    data = b""
    deadline = time.monotonic() + 3
    sock.settimeout(0.3 if not parse else 3)
    while time.monotonic() < deadline and len(done) < count:
        try:
            piece = sock.recv(65536)
        except socket.timeout:
            if not parse:
                break
            continue
        except ConnectionResetError:
            break
        if not piece:
            break
        data += piece
        if parse:
            try:
                parser.feed_data(piece)
            except httptools.HttpParserError:
                break
    return data


def exchange(port: int, data: bytes, count: int, parse: bool, warmed=lambda: None) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(PLAIN)  # the warm-up: leaves a kept-alive connection to the endpoint in the pool
        assert b'{"ok": true}' in read_responses(sock, 1)
        time.sleep(0.02)
        warmed()
        sock.sendall(data)
        return read_responses(sock, count, parse)


@pytest.fixture(scope="module")
def fronts(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("express")
    routing.API_HANDOFFS[HANDOFF] = lambda client, request, response: False
    with_lane, without_lane = RunningFront(tmp_path, True), RunningFront(tmp_path, False)
    yield with_lane, without_lane
    with_lane.stop()
    without_lane.stop()
    routing.API_HANDOFFS.pop(HANDOFF, None)


@pytest.fixture
def lane_spy(monkeypatch):
    taken, handed = [], []
    relay, hand_over = express.Express.relay, express.Express._hand_over

    def spy_relay(self, data):
        taken.append(relay(self, data))
        return taken[-1]

    def spy_hand_over(self):
        handed.append(self.target)
        return hand_over(self)
    monkeypatch.setattr(express.Express, "relay", spy_relay)
    monkeypatch.setattr(express.Express, "_hand_over", spy_hand_over)
    return taken, handed


@pytest.mark.parametrize("case", list(CORPUS))
def test_the_express_lane_changes_no_byte_either_way(fronts, lane_spy, case):
    data, takes, hands_over = CORPUS[case]
    with_lane, without_lane = fronts
    count, parse = EXPECTED_READS.get(case, 1), case not in IDLE_READS
    results = []
    for front in (without_lane, with_lane):
        front.trust_again()
        before = len(front.upstream.requests)
        answer = exchange(front.port, data, count, parse, warmed=lambda: (lane_spy[0].clear(), lane_spy[1].clear()))
        time.sleep(0.05)
        results.append((answer, front.upstream.requests[before + 1:]))  # after the warm-up's
    assert not with_lane.errors and not without_lane.errors, (with_lane.errors, without_lane.errors)
    (general_answer, general_sent), (lane_answer, lane_sent) = results
    assert lane_answer == general_answer, case
    assert lane_sent == general_sent, case
    assert general_answer, f"{case}: no answer at all"
    taken, handed = lane_spy
    assert (True in taken) == takes, (case, taken)
    assert bool(handed) == hands_over, (case, handed)


def test_a_warm_connection_takes_the_lane_request_after_request(fronts, lane_spy):
    with_lane, _ = fronts
    taken, handed = lane_spy
    with socket.create_connection(("127.0.0.1", with_lane.port), timeout=5) as sock:
        for _ in range(20):
            sock.sendall(PLAIN)
            assert b'{"ok": true}' in read_responses(sock, 1)
    assert taken.count(True) >= 19 and not handed, taken


def test_a_client_that_leaves_during_a_lane_request_closes_its_upstream_connection(fronts, lane_spy):
    with_lane, _ = fronts
    taken, _ = lane_spy
    with socket.create_connection(("127.0.0.1", with_lane.port), timeout=5) as sock:
        sock.sendall(PLAIN)
        read_responses(sock, 1)
        sock.sendall(request(b"/silent"))
        time.sleep(0.2)
        assert taken[-1] is True and len(with_lane.front.clients) == 1
        lane = next(iter(with_lane.front.clients)).express
        upstream_transport = lane.transport
        assert upstream_transport is not None
    deadline = time.monotonic() + 2  # (the endpoint is asleep for 3 s: only the front can close its side)
    while time.monotonic() < deadline and (with_lane.front.clients or not upstream_transport.is_closing()):
        time.sleep(0.05)
    assert not with_lane.front.clients and upstream_transport.is_closing()


def test_a_response_with_a_transfer_coding_other_than_chunked_is_a_502(fronts):
    for front in fronts:
        answer = exchange(front.port, request(b"/gzip-chunked"), 1, True)
        assert answer.startswith(b"HTTP/1.1 502 ") and b"ENDPOINT_ERROR" in answer and b"gzip" in answer, answer
        assert b"hello" not in answer


@pytest.mark.parametrize("given, chain", [(b"", b"127.0.0.1"),
                                          (b"X-Forwarded-For: 10.0.0.1\r\nX-Real-IP: 6.6.6.6\r\n",
                                           b"10.0.0.1, 127.0.0.1")])
def test_the_endpoint_learns_the_client_from_the_forwarding_headers(fronts, lane_spy, given, chain):
    for front in fronts:
        before = len(front.upstream.requests)
        exchange(front.port, request(b"/echo", headers=given), 1, True)
        time.sleep(0.05)
        sent = front.upstream.requests[before + 1]
        forwarding = [line for line in sent.split(b"\r\n") if line.lower().startswith((b"x-forwarded", b"x-real"))]
        assert forwarding == [b"X-Forwarded-For: " + chain]
    assert True in lane_spy[0]


def test_the_lane_is_only_looked_at_for_workload_targets():
    assert express.eligible(b"POST /serve-ws-a/invocations HTTP/1.1\r\n")
    assert express.eligible(b"GET /notebook-ws-u/lab HTTP/1.1\r\n")
    assert not express.eligible(b"GET /api/workspace HTTP/1.1\r\n")
    assert not express.eligible(b"GET //serve-ws-a/x HTTP/1.1\r\n")
    assert not express.eligible(b"GET http://h/serve-ws-a/x HTTP/1.1\r\n")
    assert not express.eligible(b"GET")
