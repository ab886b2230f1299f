"""A client that stops reading its responses is dropped at the send timeout, with the express lane and without it:
an attacker found that it held its connection (its slot under the connection cap, and its unsent bytes) for ever.
A response that ended into a full buffer set the keep-alive timer over the send timeout, and the keep-alive close
then waited for the buffer to drain, which the client never let happen: the connection stayed in `front.clients`,
closed, so the cap could not reclaim it either.

A front in process (fuzz_world.FuzzFront, as test_express_attack.py) with a scripted endpoint, its send timeout
short and its keep-alive timeout long (75 s: only the send timeout can drop a connection within these tests'
bounds); the client's receive buffer and the front's send buffer are small, so that a few small responses fill
them (as a client that reads nothing fills any buffer, given time)."""
import importlib.util
import socket
import time

import psutil
import pytest

from tests.front import express_fuzz
from tests.front.fuzz_world import CLOSE, FuzzFront, plain

G = b"GET /serve-ws-aaaaaa/invocations HTTP/1.1\r\nHost: front\r\n\r\n"
SEND_TIMEOUT = 1.0
BOUND = 15.0  # waits are bounded by this against hanging (the keep-alive timeout, 75 s, is far behind)

LOOPS = ["asyncio", pytest.param("uvloop", marks=pytest.mark.skipif(
    importlib.util.find_spec("uvloop") is None, reason="uvloop is not installed (the speed extra)"))]


@pytest.fixture(params=LOOPS)
def loop_kind(request):
    return request.param


def start_front(tmp_path, loop_kind, lane: bool, **config) -> FuzzFront:
    return FuzzFront(str(tmp_path), lane=lane, uvloop=loop_kind == "uvloop",
                     **{"send_timeout": SEND_TIMEOUT, "keepalive_timeout": 75, "max_connections": 1, **config})


def answers(sock: socket.socket, count: int) -> bytes:
    """The bytes of `count` whole responses (fewer if the connection closes or BOUND passes)."""
    data = b""
    deadline = time.monotonic() + BOUND
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


def connect(front: FuzzFront) -> socket.socket:
    """A client with a small receive buffer (set before connecting, so that the window is small too)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", front.port))
    return sock


def shrink(front: FuzzFront, high_water: int = 0) -> None:
    """The front's send buffer for its one client made small (and its high-water mark, when given)."""
    def run():
        client = next(iter(front.front.clients))
        client.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        if high_water:
            client.transport.set_write_buffer_limits(high=high_water)
    front.call(run)


def front_side_open(front: FuzzFront, client: socket.socket) -> bool:
    """Whether the front still holds its end of `client`'s connection (a descriptor of this process)."""
    port = client.getsockname()[1]
    return any(connection.laddr and connection.laddr[1] == front.port and connection.raddr
               and connection.raddr[1] == port for connection in psutil.Process().net_connections(kind="tcp"))


def until(predicate) -> bool:
    deadline = time.monotonic() + BOUND
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)
    return predicate()


def unsent(front: FuzzFront) -> int:
    return front.call(lambda: sum(client.transport.get_write_buffer_size() for client in front.front.clients))


def assert_dropped(front: FuzzFront, sock: socket.socket) -> None:
    """The front let go of `sock`'s connection (its slot, its end of the socket), and a new client takes the
    slot (the cap is 1)."""
    assert until(lambda: front.state()["clients"] == 0), front.call(lambda: [
        (client.state, client.write_paused, client.on_deadline) for client in front.front.clients])
    assert not front_side_open(front, sock)
    with socket.create_connection(("127.0.0.1", front.port), timeout=5) as other:
        other.sendall(G)
        assert answers(other, 1).startswith(b"HTTP/1.1 200 OK\r\n")
    assert not front.errors, front.errors


@pytest.mark.parametrize("lane", [True, False], ids=["lane", "no-lane"])
def test_a_client_that_stops_reading_is_dropped_at_the_send_timeout(tmp_path, loop_kind, lane):
    """Each request its own read, none of the responses read: with the lane, the lane takes them until writing is
    paused (one of its responses ends into the full buffer, `lane_finished`); then, or without the lane, the
    general path's (`response_finished`); the requests sent after wait behind the response not yet out."""
    front = start_front(tmp_path, loop_kind, lane)
    counts = express_fuzz.LaneCounts()
    try:
        with connect(front) as sock:
            sock.sendall(G)
            assert answers(sock, 1)  # the warm-up: a kept-alive connection to the endpoint in the pool
            shrink(front, high_water=8192)
            front.endpoint.plan = [[plain(b"%d" % n + b"r" * 6000)] for n in range(8)]
            counts.reset()
            for _ in range(8):
                sock.sendall(G)
                time.sleep(0.05)
            assert (counts.taken > 0) == lane, str(counts)
            assert_dropped(front, sock)
    finally:
        counts.undo()
        front.stop()


def test_a_connection_closed_with_its_response_unsent_is_dropped_at_the_send_timeout(tmp_path, loop_kind):
    """`Connection: close`: the connection is closed once the response is written, and a close waits for the
    buffer to drain; the client reading none of it, the front aborts it at the send timeout."""
    front = start_front(tmp_path, loop_kind, lane=False)
    try:
        with connect(front) as sock:
            sock.sendall(G)
            assert answers(sock, 1)
            shrink(front)
            front.endpoint.plan = [[plain(b"c" * 200000)]]  # below the high-water mark: writing is not paused
            sock.sendall(G[:-2] + b"Connection: close\r\n\r\n")
            assert until(lambda: front.call(lambda: [client.state for client in front.front.clients]) == ["closed"])
            assert unsent(front) > 0
            assert_dropped(front, sock)
    finally:
        front.stop()


def test_at_the_cap_a_connection_with_its_response_unsent_is_not_closed_to_make_room(tmp_path, loop_kind):
    """A connection between requests is closed to make room at the cap; one whose last response is still in its
    buffer is not between requests: closed, it would leave the count and stay open for as long as its client did
    not read. It keeps its slot (503 for the newcomer) until its keep-alive timeout, then the send timeout."""
    front = start_front(tmp_path, loop_kind, lane=False, keepalive_timeout=5)
    try:
        with connect(front) as sock:
            sock.sendall(G)
            assert answers(sock, 1)
            shrink(front)
            front.endpoint.plan = [[plain(b"k" * 200000)]]
            sock.sendall(G)
            assert until(lambda: front.call(lambda: [client.state for client in front.front.clients]) == ["head"])
            assert unsent(front) > 0
            with socket.create_connection(("127.0.0.1", front.port), timeout=5) as newcomer:
                newcomer.sendall(G)
                assert answers(newcomer, 1).startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
            assert front_side_open(front, sock)
            assert_dropped(front, sock)
    finally:
        front.stop()


@pytest.mark.parametrize("lane", [True, False], ids=["lane", "no-lane"])
def test_a_client_that_reads_again_within_the_send_timeout_gets_every_answer_and_keeps_its_connection(
        tmp_path, loop_kind, lane):
    """The other side of waiting for the client: the responses that waited behind the one not yet out go on when it
    reads again (`resume_writing`), and the connection is then idle under its keep-alive timer, not cut by the
    send timeout armed while it did not read."""
    front = start_front(tmp_path, loop_kind, lane, send_timeout=3)
    try:
        with connect(front) as sock:
            sock.sendall(G)
            assert answers(sock, 1)
            shrink(front, high_water=8192)
            bodies = [b"%d" % n + b"r" * 6000 for n in range(8)]
            front.endpoint.plan = [[plain(body)] for body in bodies]
            for _ in bodies:
                sock.sendall(G)
                time.sleep(0.05)
            assert until(lambda: front.call(lambda: next(iter(front.front.clients)).write_paused))
            data = answers(sock, len(bodies))
            assert [b"HTTP/1.1" + part for part in data.split(b"HTTP/1.1")[1:]] == [plain(body) for body in bodies]
            time.sleep(3.5)  # past the send timeout armed while the client did not read (a wait, not a measurement)
            sock.sendall(G)
            assert answers(sock, 1) == plain()
        assert not front.errors, front.errors
    finally:
        front.stop()


def test_a_tunnel_whose_client_stops_reading_is_dropped_at_the_send_timeout_once_the_endpoint_closes(
        tmp_path, loop_kind):
    """An upgraded connection (a byte tunnel) closed by its endpoint while its client reads nothing: the close
    waits for the buffer to drain, and the front aborts it at the send timeout, as for an HTTP response."""
    front = start_front(tmp_path, loop_kind, lane=False)
    try:
        with connect(front) as sock:
            sock.sendall(G)
            assert answers(sock, 1)
            shrink(front)
            switching = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
            front.endpoint.plan = [[switching, b"t" * 200000, CLOSE]]
            sock.sendall(G[:-2] + b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
            assert until(lambda: front.call(lambda: [client.state for client in front.front.clients]) == ["closed"])
            assert unsent(front) > 0
            assert_dropped(front, sock)
    finally:
        front.stop()
