"""Attacks on the express lane's plans (kaos_backend/front/express.py `_relay_as_planned`, express_exchange.py
`_learn_answer`): the guards that keep a plan from being reused where parsing would give another outcome. Each test
plays the same bytes against a front with the lane and one without it (express_fuzz.py's fronts) and fails when a
guard is taken out: a plan whose endpoint moved or stopped, and a plan learned from a read with bytes llhttp skips
after the message (a CRLF), whose head as kept would then end inside the body."""
import os
import socket
import time

import pytest

from kaos_backend.front import express
from tests.front import express_fuzz
from tests.front.fuzz_cases import Case
from tests.front.fuzz_world import NAME, ScriptedEndpoint, plain

POST = b"POST /" + NAME + b"/invocations HTTP/1.1\r\nHost: front\r\nContent-Length: 10\r\n\r\n0123456789"
GET = b"GET /" + NAME + b"/invocations HTTP/1.1\r\nHost: front\r\n\r\n"


@pytest.fixture(scope="module")
def fronts(tmp_path_factory):
    fronts = express_fuzz.start_fronts(str(tmp_path_factory.mktemp("plans-attack")))
    yield fronts
    express_fuzz.stop_fronts(fronts)


@pytest.fixture
def planned(monkeypatch):
    """How many reads the lane took as planned (`_relay_as_planned` sent them)."""
    calls = []
    original = express.Express._relay_as_planned

    def spy(self, data, plan):
        taken = original(self, data, plan)
        calls.append(taken)
        return taken
    monkeypatch.setattr(express.Express, "_relay_as_planned", spy)
    return calls


def test_a_request_with_a_crlf_after_its_body_is_not_planned_with_its_head_ending_in_the_body(fronts):
    """llhttp skips a CRLF after a message, so the request's body ends 2 bytes before the read: a plan that took the
    read's size less the body's as its head would keep the body's first 2 bytes as head, and send a repeated
    request's body shifted by them (`23456789\\r\\n` for `0123456789`)."""
    assert express_fuzz.run(fronts, Case([(POST + b"\r\n", 0.1)] * 3)) == []


def test_a_response_with_a_crlf_after_its_body_is_not_planned_with_its_head_ending_in_the_body(fronts):
    """The same for a response (express_exchange.ExpressExchange._learn_answer)."""
    response = plain(b"abcdef") + b"\r\n"
    assert express_fuzz.run(fronts, Case([(GET, 0.1)] * 3, [[response]] * 3)) == []


def _answer(sock: socket.socket) -> bytes:
    received = b""
    while express_fuzz._responses(received) < 1:
        piece = sock.recv(65536)
        assert piece, received
        received += piece
    return received


def test_a_planned_request_follows_its_endpoint_when_it_moves_or_stops(fronts, tmp_path, planned):
    """A plan names the endpoint's address (and the Host line, the pooled connection) it was made for: once the
    front knows another address, or that the endpoint stopped, the request is parsed and routed again."""
    moved = ScriptedEndpoint(os.path.join(str(tmp_path), "moved.sock"))
    results = []
    try:
        for front in fronts:
            name = NAME.decode()
            here = ("PIPELINE_RUNNING", "127.0.0.1", 8080, front.endpoint.path, None)
            there = ("PIPELINE_RUNNING", "127.0.0.1", 8081, moved.path, None)
            stopped = ("PIPELINE_STOPPED", "127.0.0.1", None, None, None)
            answers, before = [], len(front.endpoint.requests)
            with socket.create_connection(("127.0.0.1", front.port), timeout=5) as sock:
                for address in (here, here, here, there, there, there, stopped):
                    def switch(address=address):
                        endpoints = front.front.endpoints
                        if endpoints.lookup(name) is not address:
                            endpoints.lookup = {name: address}.get
                            endpoints.forget(name)
                    front.call(switch)
                    sock.sendall(POST)
                    answers.append(_answer(sock))
                    time.sleep(0.02)
            time.sleep(0.05)
            results.append((answers, [len(front.endpoint.requests) - before, len(moved.requests)]))
            moved.requests.clear()
            assert not front.errors, front.errors
    finally:
        moved.close()
    (general, general_counts), (lane, lane_counts) = results
    assert lane == general
    assert lane_counts == general_counts == [3, 3], (general_counts, lane_counts)
    assert general[-1].startswith(b"HTTP/1.1 503 "), general[-1]
    assert planned.count(True) >= 2, planned  # (the lane planned the repeated requests to each address)
