"""Pipelined requests the front answers itself (unknown endpoints, API refusals) are answered one after the other,
however many: an attacker found that 2,000 of them overflowed the stack (a recursion per answer) and left the
connection hung past every timeout, with a 164 KB traceback in the log per connection. Pipelined requests to an
endpoint go on one kept-alive connection to it, one after the other (test_keepalive.py too)."""
import socket
import time

import pytest

from tests.front import express_fuzz
from tests.front.fuzz_world import FuzzFront, plain
from tests.front.support import front_process, health_request


def _count_answers(port: int, raw: bytes, expected: int, timeout: float = 60) -> int:
    """How many HTTP/1.1 status lines come back for `raw` sent at once on one connection (waits until
    `expected` came, the connection closed, or `timeout` passed: a bound against hanging)."""
    received = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        deadline = time.monotonic() + timeout
        while received.count(b"HTTP/1.1 ") < expected and time.monotonic() < deadline:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                data = sock.recv(1 << 16)
            except socket.timeout:
                break
            if not data:
                break
            received += data
    return received.count(b"HTTP/1.1 404 ")


def test_two_thousand_pipelined_requests_to_an_unknown_endpoint_are_all_answered(front_backend):
    raw = b"GET /serve-nowhere-abcdee/x HTTP/1.1\r\nHost: x\r\n\r\n" * 2000
    assert _count_answers(front_backend.port, raw, 2000) == 2000
    assert "RecursionError" not in front_backend.log()


def test_an_api_request_then_hundreds_of_unknown_endpoints_are_all_answered(front_backend):
    raw = health_request(front_backend) + b"GET /serve-elsewhere-abcdef/x HTTP/1.1\r\nHost: x\r\n\r\n" * 600
    assert _count_answers(front_backend.port, raw, 601) == 600
    assert "RecursionError" not in front_backend.log() and "callback error" not in front_backend.log()


def test_two_thousand_pipelined_upgrades_the_front_does_not_honour_are_all_answered(front_backend):
    """An Upgrade that is not a WebSocket to a workload is an ordinary request, and the next one follows it: in a
    loop (each used to be a recursion: 2,000 of them in one read overflowed the stack)."""
    raw = b"GET /serve-nowhere-abcdee/x HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n" * 2000
    assert _count_answers(front_backend.port, raw, 2000) == 2000
    assert "RecursionError" not in front_backend.log()


def test_pipelined_requests_behind_a_waiting_one_do_not_pile_up_in_memory(front_backend, endpoint):
    """30 connections, each a request the endpoint never answers followed by 120 KB of small pipelined requests in
    one write: the front parses only a few dozen of them while the first waits (the rest stays raw, and reading
    pauses), so its memory grows by a few MB, not by 72,000 parsed requests."""
    front = front_process(front_backend)
    tail = b"GET /serve-nowhere-abcdee/x HTTP/1.1\r\nHost: x\r\n\r\n" * (120 * 1024 // 50)
    before = front.memory_info().rss
    sockets = []
    try:
        for _ in range(30):
            sock = socket.create_connection(("127.0.0.1", front_backend.port), timeout=20)
            sockets.append(sock)
            sock.sendall(b"GET /%s/hang HTTP/1.1\r\nHost: x\r\n\r\n" % endpoint.encode() + tail)
        time.sleep(1)  # the front reads what was sent (a settling wait, not a measurement)
        grown = front.memory_info().rss - before
    finally:
        for sock in sockets:
            sock.close()
    assert grown < 20 * 1024 * 1024, f"the front grew by {grown} bytes"



G = b"GET /serve-ws-aaaaaa/invocations HTTP/1.1\r\nHost: front\r\n\r\n"

def _read_answers(sock: socket.socket, count: int) -> bytes:
    received = b""
    while express_fuzz._responses(received) < count:
        piece = sock.recv(65536)  # (bounded by the socket's timeout)
        if not piece:
            break
        received += piece
    return received


@pytest.mark.parametrize("lane, sends", [
    (True, "in one write"), (False, "in one write"), (True, "behind one in flight"), (False, "behind one in flight")])
def test_pipelined_requests_to_an_endpoint_take_one_upstream_connection(tmp_path, lane, sends):
    """Each request after the first goes on the connection the one before it came back on: the endpoint accepts
    one connection, the warm-up's. The front told the client a response was done (and so started the next
    request) before it put the connection back in the pool: every other request opened a connection of its own.
    "behind one in flight": the first request alone (the lane's, when it is on), the rest while its answer is
    delayed."""
    front = FuzzFront(str(tmp_path), lane=lane)
    try:
        with socket.create_connection(("127.0.0.1", front.port), timeout=10) as sock:
            sock.sendall(G)
            assert express_fuzz._responses(_read_answers(sock, 1)) == 1  # the warm-up: one connection
            front.endpoint.plan = [[0.2, plain(b"0")]] + [[plain(b"%d" % n)] for n in range(1, 8)]
            if sends == "in one write":
                sock.sendall(G * 8)
            else:
                sock.sendall(G)
                time.sleep(0.05)
                sock.sendall(G * 7)
            received = _read_answers(sock, 8)
        expected = [plain(b"%d" % n) for n in range(8)]
        assert [b"HTTP/1.1" + part for part in received.split(b"HTTP/1.1")[1:]] == expected
        assert front.endpoint.accepted == 1
        assert not front.errors, front.errors
    finally:
        front.stop()
