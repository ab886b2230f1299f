"""What an attack on the express lane (branch attack-express) found beyond the differential corpus of
test_express_fuzz.py: resources a lane left behind, and a client that reads its answers slowly. Each test failed
before its fix (see the commits). A front in process (fuzz_world.FuzzFront) with a scripted endpoint."""
import gc
import importlib.util
import socket
import time
import weakref

import pytest

from tests.front import express_fuzz
from tests.front.fuzz_world import CLOSE, FuzzFront, plain

ATTEMPTS = 20  # sends of a request until the path a test wants took it (a bound, under load)
G = b"GET /serve-ws-aaaaaa/invocations HTTP/1.1\r\nHost: front\r\n\r\n"


LOOPS = ["asyncio", pytest.param("uvloop", marks=pytest.mark.skipif(
    importlib.util.find_spec("uvloop") is None, reason="uvloop is not installed (the speed extra)"))]


@pytest.fixture(params=LOOPS)
def loop_kind(request):
    """The front's event loop: asyncio's, and uvloop's (the one `kaos-backend serve` runs where it is installed)."""
    return request.param


@pytest.fixture
def lane_front(tmp_path, loop_kind):
    front = FuzzFront(str(tmp_path), lane=True, uvloop=loop_kind == "uvloop")
    yield front
    front.stop()


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
    declined = (b"Connection: X-Hop\r\nX-Hop: 1\r\n", b"Expect: 100-continue\r\n", b"Transfer-Encoding: chunked\r\n")
    for headers in declined:
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
                # the lane takes the POST only when it arrives in one read and a kept connection to the endpoint
                # is back in the pool: under load either can miss, and the general path answers it (declined)
                for _ in range(ATTEMPTS):
                    counts.reset()
                    sock.sendall(request)
                    assert plain()[-12:] in answers(sock, 1)
                    if counts.taken == taken:
                        break
                assert (counts.taken, counts.declined) == (taken, 1 - taken)
                held = lane_front.call(lambda: _bytes_held(next(iter(lane_front.front.clients)).express))
                assert held < 1000, (request[:40], held)
    finally:
        counts.undo()


def _slow_reader(front: FuzzFront, sock: socket.socket) -> None:
    """Make the front's side of `sock` fill at once: a small send buffer and a small high-water mark (the
    client's own receive buffer is small too), so that a lane's write of one response pauses writing."""
    def shrink():
        client = next(iter(front.front.clients))
        client.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        client.transport.set_write_buffer_limits(high=8192)
    front.call(shrink)


def test_a_client_that_reads_slowly_gets_each_answer_once(lane_front):
    """The lane's own write of a response could pause the client's writing, which asked the lane to pause
    reading its endpoint: it handed the exchange to the general path with the bytes it had just written, which
    wrote them again (a second copy of the response), and the lane then failed on the connection it had let go
    (AttributeError into the loop's exception handler)."""
    front = lane_front
    bodies = [b"%d" % n + b"r" * 50000 for n in range(6)]
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(5)
        sock.connect(("127.0.0.1", front.port))
        sock.sendall(G)
        assert answers(sock, 1)
        _slow_reader(front, sock)
        front.endpoint.plan = [[plain(body)] for body in bodies]
        for _ in bodies:  # one at a time (each the lane's while writing is not paused), none read
            sock.sendall(G)
            time.sleep(0.1)
        data = answers(sock, len(bodies) + 1)
    assert express_fuzz._responses(data) == len(bodies)
    assert [plain(body) for body in bodies] == [b"HTTP/1.1" + part for part in data.split(b"HTTP/1.1")[1:]]


def test_a_client_that_reads_a_late_body_slowly_gets_it_once_under_the_send_timeout(lane_front):
    """The head going out alone when its hold ran out could pause the client's writing too: the lane, not yet
    marked as having sent it, handed the exchange over with those bytes, and the general path sent them again;
    then, the client paused, the lane armed its read timer over the send timeout (and never re-armed it when the
    client read again)."""
    front = lane_front
    whole = plain(b"b" * 50000)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(5)
        sock.connect(("127.0.0.1", front.port))
        sock.sendall(G)
        assert answers(sock, 1)
        _slow_reader(front, sock)
        front.endpoint.plan = [[whole[:30000], 0.3, whole[30000:]]]  # the hold runs out in between
        sock.sendall(G)
        time.sleep(0.5)

        def deadline():
            client = next(iter(front.front.clients))
            return client.write_paused, client.on_deadline == client.abort
        assert front.call(deadline) == (True, True)  # paused, under the send timeout
        data = answers(sock, 2)
    assert data == whole


@pytest.mark.parametrize("last", [b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
                                  b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"], ids=["close", "http-1.0"])
def test_a_response_that_ends_its_connection_leaves_the_lane_ready_for_the_next(lane_front, last):
    """The lane reads every response of a client with one parser, whatever connection it came on: after a
    response that ended its connection (Connection: close, or HTTP/1.0) llhttp refused any more bytes, so the
    client's next lane request was handed to the general path (parsed twice) for nothing."""
    counts = express_fuzz.LaneCounts()
    try:
        with socket.create_connection(("127.0.0.1", lane_front.port), timeout=5) as sock:
            sock.sendall(G)
            assert answers(sock, 1)
            lane_front.endpoint.plan = [[last, CLOSE]]
            counts.reset()
            for _ in range(3):  # the lane's; the general path's (the pool is empty); the lane's again
                sock.sendall(G)
                assert answers(sock, 1)
                time.sleep(0.05)
        assert (counts.taken, counts.handed) == (2, 0)
    finally:
        counts.undo()
