"""A request body trickled steadily (a few bytes just before each client_body_timeout) is cut too: in all it may
take client_body_timeout plus one second per client_body_min_rate bytes (Apache's mod_reqtimeout MinRate). A real
Client with the real parser, a stand-in transport and a stand-in clock (the deadlines are what is checked; no
wall-clock time is measured)."""
import asyncio

import pytest

from kaos_backend.front import body as body_module
from kaos_backend.front import client as client_module
from kaos_backend.front.config import FrontConfig
from kaos_backend.front.server import Front


class Transport:
    def __init__(self):
        self.written = bytearray()
        self.closed = False

    def write(self, data):
        self.written += data

    def get_extra_info(self, name, default=None):
        return default

    def set_write_buffer_limits(self, *args):
        pass

    def get_write_buffer_size(self):
        return 0  # everything written is sent at once

    def can_write_eof(self):
        return True

    def write_eof(self):
        pass

    def close(self):
        self.closed = True

    abort = close

    def is_closing(self):
        return self.closed


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(client_module.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(body_module.time, "monotonic", lambda: now[0])
    return now


def _client(config):
    loop = asyncio.new_event_loop()
    front = Front(loop, "/nonexistent/api.sock", lambda name: None, config)
    client, transport = front.protocol(), Transport()
    client.connection_made(transport)
    return client, transport, loop


def _trickle(client, transport, clock, every: float, size: int, steps: int):
    """Send `size` bytes every `every` seconds (checking the deadline after each): the step of the 408, or None."""
    for step in range(1, steps + 1):
        clock[0] += every
        client.expire(clock[0])
        if transport.written:
            return step
        client.data_received(b"x" * size)
    return None


def test_a_steady_trickle_is_cut_with_408(clock):
    client, transport, loop = _client(FrontConfig(client_body_timeout=10, client_body_min_rate=100))
    try:
        client.data_received(b"POST /serve-ws-abcdef/invocations HTTP/1.1\r\nHost: k\r\nContent-Length: 100000\r\n\r\n")
        step = _trickle(client, transport, clock, every=5, size=10, steps=50)  # 2 bytes a second, never 10 s idle
        assert step is not None and step * 5 <= 20, (step, bytes(transport.written))
        assert transport.written.startswith(b"HTTP/1.1 408 ")
        assert b"slower than 100 bytes a second" in transport.written
    finally:
        loop.close()


def test_a_body_at_the_rate_goes_on(clock):
    client, transport, loop = _client(FrontConfig(client_body_timeout=10, client_body_min_rate=100))
    try:
        client.data_received(b"POST /serve-ws-abcdef/invocations HTTP/1.1\r\nHost: k\r\nContent-Length: 100000\r\n\r\n")
        assert _trickle(client, transport, clock, every=5, size=600, steps=50) is None  # 120 bytes a second
    finally:
        loop.close()


def test_a_stalled_body_says_it_stalled(clock):
    client, transport, loop = _client(FrontConfig(client_body_timeout=10, client_body_min_rate=100))
    try:
        client.data_received(b"POST /serve-ws-abcdef/invocations HTTP/1.1\r\nHost: k\r\nContent-Length: 100000\r\n\r\n"
                             + b"x" * 5000)
        clock[0] += 11
        client.expire(clock[0])
        assert transport.written.startswith(b"HTTP/1.1 408 ") and b"stalled for 10 s" in transport.written
    finally:
        loop.close()


def test_lingering_after_an_early_answer_ends_however_much_comes(clock):
    """A 413 is answered before the body; the rest of the body is read and dropped while it comes, but not for more
    than lingering_time in all (nginx's lingering_time): a client that keeps sending cannot keep its connection."""
    client, transport, loop = _client(FrontConfig(lingering_timeout=2, lingering_time=30))
    try:
        client.data_received(b"POST /serve-ws-abcdef/x HTTP/1.1\r\nHost: k\r\nContent-Length: %d\r\n\r\n"
                             % (10 ** 12))
        assert transport.written.startswith(b"HTTP/1.1 413 ")
        for _ in range(60):  # a read every second, well within the lingering timeout
            clock[0] += 1
            client.expire(clock[0])
            if transport.closed:
                break
            client.data_received(b"x" * 1000)
        assert transport.closed and clock[0] - 1000.0 <= 31
    finally:
        loop.close()
