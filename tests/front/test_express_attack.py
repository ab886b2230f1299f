"""What an attack on the express lane (branch attack-express) found beyond the differential corpus of
test_express_fuzz.py: resources a lane left behind, and a client that reads its answers slowly. Each test failed
before its fix (see the commits). A front in process (express_fuzz.FuzzFront) with a scripted endpoint."""
import gc
import socket
import time
import weakref

import pytest

from tests.front import express_fuzz
from tests.front.express_fuzz import FuzzFront, plain

G = b"GET /serve-ws-aaaaaa/invocations HTTP/1.1\r\nHost: front\r\n\r\n"


@pytest.fixture
def lane_front(tmp_path):
    front = FuzzFront(str(tmp_path), lane=True)
    yield front
    front.stop()
    assert not front.errors, front.errors


def answers(sock: socket.socket, count: int, timeout: float = 5) -> bytes:
    """The bytes of `count` whole responses (fewer if the connection closes or `timeout` passes)."""
    data = b""
    deadline = time.monotonic() + timeout
    sock.settimeout(0.1)
    while express_fuzz._responses(data) < count and time.monotonic() < deadline:
        try:
            piece = sock.recv(1 << 20)
        except socket.timeout:
            continue
        if not piece:
            break
        data += piece
    return data


def test_a_closed_connection_is_freed_after_requests_the_lane_declined(lane_front):
    """The lane stopped llhttp by raising one exception instance again and again: each raise added its frames
    to that instance's traceback, which kept every lane (and client, and transport) that ever declined a
    request or handed over a response alive for the process's life."""
    refs = []
    for headers in (b"Connection: X-Hop\r\nX-Hop: 1\r\n", b"Expect: 100-continue\r\n", b"Transfer-Encoding: chunked\r\n"):
        with socket.create_connection(("127.0.0.1", lane_front.port), timeout=5) as sock:
            sock.sendall(G)  # the lane's (the pool is warm after the first connection)
            assert answers(sock, 1)
            lane_front.endpoint.plan = [[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"]]
            sock.sendall(G)  # a response the lane hands over
            assert answers(sock, 1)
            request = G[:-2] + headers + (b"\r\n0\r\n\r\n" if b"chunked" in headers else b"\r\n")
            sock.sendall(request)  # a request the lane's parser stops
            assert answers(sock, 1)
            refs.append(lane_front.call(lambda: weakref.ref(next(iter(lane_front.front.clients)))))
        assert lane_front.settle()["clients"] == 0
    lane_front.call(gc.collect)
    assert [ref() for ref in refs] == [None, None, None]


def _bytes_held(lane) -> int:
    """The bytes a lane's attributes hold (directly, or in lists and tuples)."""
    held = 0
    for name in type(lane).__slots__:
        value = getattr(lane, name, None)
        for item in (value if isinstance(value, (list, tuple)) else (value,)):
            if isinstance(item, (bytes, bytearray, memoryview)):
                held += len(item)
            elif isinstance(item, tuple):
                held += sum(len(part) for part in item if isinstance(part, bytes))
    return held


def test_an_idle_connection_keeps_no_request_in_its_lane(lane_front):
    """A lane kept its last request (the body: up to a read's 256 KiB) until the connection's next request: a
    thousand idle kept-alive connections could hold 256 MB the general path frees with each answer."""
    counts = express_fuzz.LaneCounts()
    try:
        body = b"b" * 60000
        post = b"POST /serve-ws-aaaaaa/invocations HTTP/1.1\r\nHost: front\r\nContent-Length: 60000\r\n\r\n" + body
        declined = post.replace(b"/invocations", b"/%69nvocations")  # a `%`: parsed whole, then declined
        with socket.create_connection(("127.0.0.1", lane_front.port), timeout=5) as sock:
            sock.sendall(G)
            assert answers(sock, 1)
            for request, taken in ((post, 1), (declined, 0)):
                counts.reset()
                sock.sendall(request)
                assert plain()[-12:] in answers(sock, 1)
                assert (counts.taken, counts.declined) == (taken, 1 - taken)
                held = lane_front.call(lambda: _bytes_held(next(iter(lane_front.front.clients)).express))
                assert held < 1000, (request[:40], held)
    finally:
        counts.undo()
