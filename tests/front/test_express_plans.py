"""The express lane's plans and its bodies that follow their head (kaos_backend/front/express.py, express_body.py,
express_exchange.py) change nothing but the cost: a request sent again and again on one connection, and a request
whose head and body come in separate writes, give the client and the endpoint the same bytes with the lane as
without it; spies show the lane used its plans and took the split requests, so a lane that never planned (or
declined them all) would fail too."""
import socket
import time

import pytest

from kaos_backend.front import express, express_body, express_exchange
from tests.front import express_fuzz
from tests.front.test_express import CORPUS, PLAIN, RunningFront, read_responses, request

# (request, times on one connection): each a case the lane takes whole, its response the same each time
REPEATED = {
    "get": PLAIN,
    "post with a body": request(b"/echo", b"POST", b"x" * 3000, b"Content-Type: image/jpeg\r\n"),
    "post without a body": request(b"/echo", b"POST"),
    "query kept": CORPUS["query kept"][0],
    "forwarding headers": CORPUS["forwarding headers: the client's extended or replaced"][0],
    "response head and body written apart": request(b"/split"),
    "response body late": request(b"/late"),
    "other statuses": request(b"/teapot"),
    "endpoint closes after answering": request(b"/close"),
}


@pytest.fixture(scope="module")
def fronts(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("plans")
    with_lane, without_lane = RunningFront(tmp_path, True), RunningFront(tmp_path, False)
    yield with_lane, without_lane
    with_lane.stop()
    without_lane.stop()


@pytest.fixture
def spies(monkeypatch):
    """Calls of the lane's planned request, its responses read by the parser (not as planned), its sends and its held
    bodies."""
    calls = {"planned request": 0, "parsed response": 0, "sent": 0, "held body": 0}

    def count(cls, method, key):
        original = getattr(cls, method)

        def spy(self, *args):
            calls[key] += 1
            return original(self, *args)
        monkeypatch.setattr(cls, method, spy)
    count(express.Express, "_relay_as_planned", "planned request")
    count(express_exchange.ExpressExchange, "_read", "parsed response")
    count(express.Express, "_send", "sent")
    count(express_body.ExpressBody, "collect_from", "held body")
    return calls


def play(front: RunningFront, sends, answers: int, warmed):
    """`sends` ((bytes, pause after, read an answer after) ...) on a new connection after a warm-up request (which
    leaves a kept-alive connection to the endpoint in the pool, and its plans), then `answers` more answers read:
    (the client's bytes, the endpoint's requests)."""
    with socket.create_connection(("127.0.0.1", front.port), timeout=5) as sock:
        sock.sendall(PLAIN)
        assert b'{"ok": true}' in read_responses(sock, 1)
        time.sleep(0.02)
        warmed()
        before = len(front.upstream.requests)
        received = b""
        for data, pause, wait in sends:
            sock.sendall(data)
            if pause:
                time.sleep(pause)
            if wait:
                received += read_responses(sock, 1)
        received += read_responses(sock, answers) if answers else b""
    time.sleep(0.05)
    return received, front.upstream.requests[before:]


def compared(fronts, sends, answers: int = 0, spies=None):
    results = []
    for front in reversed(fronts):  # the general path first
        front.trust_again()
        results.append(play(front, sends, answers, warmed=lambda: spies.update(dict.fromkeys(spies, 0))
                            if spies is not None else None))
    assert not fronts[0].errors and not fronts[1].errors, (fronts[0].errors, fronts[1].errors)
    (general_answer, general_sent), (lane_answer, lane_sent) = results
    assert general_answer, "no answer at all"
    assert lane_answer == general_answer
    assert lane_sent == general_sent
    return lane_answer


@pytest.mark.parametrize("case", list(REPEATED))
def test_a_request_repeated_on_a_connection_is_relayed_as_planned_with_the_same_bytes(fronts, spies, case):
    data = REPEATED[case]
    compared(fronts, [(data, 0, True)] * 4, spies=spies)
    assert spies["planned request"] >= 3, spies
    # (a response whose head goes out alone, past the hold, or that closes its connection is not planned)
    if case not in ("response body late", "endpoint closes after answering"):
        assert spies["parsed response"] <= 1, spies  # (the first, for a response unlike the warm-up's)


def test_a_repeated_request_with_another_body_of_its_length_is_planned_and_sent_as_it_is(fronts, spies):
    sends = [(request(b"/echo", b"POST", bytes([65 + n]) * 500), 0, True) for n in range(4)]
    compared(fronts, sends, spies=spies)
    assert spies["planned request"] == 3, spies


def test_a_body_of_another_length_is_parsed_again(fronts, spies):
    sends = [(request(b"/echo", b"POST", b"b" * size), 0, True) for size in (10, 10, 11, 12)]
    compared(fronts, sends, spies=spies)
    assert spies["planned request"] == 1 and spies["sent"] == 4, spies


@pytest.mark.parametrize("pause", [0.0, 0.01])
def test_a_body_written_after_its_head_is_taken_by_the_lane(fronts, spies, pause):
    """Python's http.client (and requests, urllib3) write a request's head and its body apart (read together or
    apart by the front, as they come: 10 ms apart, apart)."""
    whole = request(b"/echo", b"POST", b"j" * 450, b"Content-Type: image/jpeg\r\n")
    head = whole[:-450]
    sends = [(head, pause, False), (whole[-450:], 0, True)] * 3
    compared(fronts, sends, spies=spies)
    assert spies["sent"] == 3 and (spies["held body"] == 3 or not pause), spies


def test_a_body_in_many_writes_is_taken_once_whole(fronts, spies):
    whole = request(b"/echo", b"POST", b"m" * 3000)
    sends = [(whole[:-3000], 0, False)] + [(whole[-3000 + n:len(whole) - 3000 + n + 1000], 0.005, False)
                                           for n in range(0, 3000, 1000)]
    sends[-1] = (sends[-1][0], 0, True)
    compared(fronts, sends, spies=spies)
    assert spies["held body"] == 1 and spies["sent"] == 1, spies


def test_a_body_later_than_the_hold_goes_the_general_way(fronts, spies):
    whole = request(b"/echo", b"POST", b"l" * 100)
    compared(fronts, [(whole[:-100], 0.3, False), (whole[-100:], 0, True)], spies=spies)  # (the hold: 50 ms)
    assert spies["held body"] == 1 and spies["sent"] == 0, spies


def test_a_request_pipelined_behind_a_held_body_goes_the_general_way_with_it(fronts, spies):
    whole = request(b"/echo", b"POST", b"p" * 100)
    compared(fronts, [(whole[:-100], 0.01, False), (whole[-100:] + PLAIN, 0, False)], answers=2, spies=spies)
    assert spies["held body"] == 1 and spies["sent"] == 0, spies


def test_held_bodies_keep_to_the_lanes_bounds(fronts, spies):
    """A body past the lane's size, a body past the endpoint's limit (the general path's 413) and a request
    the lane does not take (Expect) are not held."""
    large = express_body.EXPRESS_REQUEST_BYTES
    sends = [(request(b"/echo", b"POST", b"g" * large)[:-large], 0.01, False), (b"g" * large, 0, True)]
    compared(fronts, sends, spies=spies)
    too_large = request(b"/echo", b"POST", b"t" * (1024 * 1024 + 1))
    compared(fronts, [(too_large[:300], 0.1, False)], answers=1, spies=spies)
    expect = request(b"/echo", b"POST", b"e" * 10, b"Expect: 100-continue\r\n")
    compared(fronts, [(expect[:-10], 0.1, False), (expect[-10:], 0, True)], spies=spies)
    assert spies["held body"] == 0, spies


def test_a_held_body_that_stalls_gets_the_general_paths_408(tmp_path, spies):
    """The hold hands the bytes to the general path, whose body timer then bounds the wait."""
    fronts = express_fuzz.start_fronts(str(tmp_path), client_body_timeout=1)
    try:
        for front in fronts:
            with socket.create_connection(("127.0.0.1", front.port), timeout=5) as sock:
                sock.sendall(express_fuzz.WARM_UP)  # (the endpoint's address found, a connection to it pooled)
                assert read_responses(sock, 1).startswith(b"HTTP/1.1 200 ")
                before = len(front.endpoint.requests)
                sock.sendall(b"POST /serve-ws-aaaaaa/x HTTP/1.1\r\nHost: f\r\nContent-Length: 10\r\n\r\n12345")
                answer = read_responses(sock, 1)
                assert answer.startswith(b"HTTP/1.1 408 "), answer
            assert len(front.endpoint.requests) == before
            assert not front.errors, front.errors
        assert spies["held body"] == 1 and spies["sent"] == 0, spies
    finally:
        express_fuzz.stop_fronts(fronts)
