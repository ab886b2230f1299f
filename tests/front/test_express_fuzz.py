"""The express lane against a differential fuzzer (express_fuzz.py): each case is played against a front with the
lane and one without it, and the client's bytes, the endpoint's requests and connections must be the same, each
front left as it was and its loop's exception handler given nothing.

FOUND holds the cases a campaign found (each failed before its fix; see the commits); the random run makes
KAOS_FUZZ_CASES (default 40) new cases from KAOS_FUZZ_SEED (default: a fixed seed, so CI is repeatable) and plays
each once, the even-numbered on asyncio's loop, the odd-numbered on uvloop's (without uvloop, asyncio's plays all),
in about half a minute in all (the found corpus: half a minute more). Split so, the two loops' runs cover together
the same lines of kaos_backend/front as each loop playing all 40 (measured with coverage.py for the default seed:
1004 lines either way), in half the time. A longer campaign: `python -m tests.front.express_fuzz --cases 1000
--seed N [--uvloop]`.
"""
import importlib.util
import os
import random

import pytest

from tests.front import express_fuzz
from tests.front.fuzz_cases import Case
from tests.front.fuzz_world import CLOSE, RESET, STALL, plain

P = b"POST /serve-ws-aaaaaa/invocations HTTP/1.1\r\nHost: front\r\nContent-Length: 2\r\n\r\n{}"
G = b"GET /serve-ws-aaaaaa/invocations HTTP/1.1\r\nHost: front\r\n\r\n"

HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None
LOOPS = ["asyncio", pytest.param("uvloop", marks=pytest.mark.skipif(
    not HAVE_UVLOOP, reason="uvloop is not installed (the speed extra)"))]

LOOP_KINDS = ("asyncio", "uvloop")

# name: case (each found by a campaign, reduced by hand)
FOUND = {
    # the hold ran out after the head's Content-Length but before its end: the lane sent the head as it was,
    # without the headers still to come, and with the status its parser had: 0 for the lane's first response,
    # else the previous response's (this 201 went out as a 200)
    "a response head paused after its Content-Length": Case(
        [(G, 0.0)], [[b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 2\r\nX-Aft", 0.1, b"er: 1\r\n\r\nok"]]),
    "a response head paused after its Content-Length, after a 200": Case(
        [(G, 0.0)], [[b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\nX-Aft", 0.1, b"er: 1\r\n\r\nok"]]),
    # handed to the general path before a final head came (an interim response; a head not whole when the hold
    # ran out), the request kept the lane's read timer, which did nothing once the lane had let go: no 504, the
    # client waited for as long as the endpoint kept the connection
    "an interim response, then nothing": Case([(G, 0.0)], [[b"HTTP/1.1 100 Continue\r\n\r\n", STALL, CLOSE]]),
    "a response head cut short, then nothing": Case([(P, 0.0)], [[b"HTTP/1.1 200 OK\r\nContent-Le", STALL, RESET]]),
    # the general path refuses (502) a response head past 64 KiB; the lane relayed one that came whole
    "a response head past 64 KiB": Case([(G, 0.0)], [[
        b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-Big%d: %s\r\n" % (n, b"b" * 4100) for n in range(16))
        + b"Content-Length: 2\r\n\r\nok"]]),
    # `Connection: close` names a header `Close` too, which the general path drops; the lane kept it
    "a Close header with Connection: close": Case([(G, 0.0)], [[
        b"HTTP/1.1 200 OK\r\nClose: 1\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"]]),
    # a request pipelined behind the lane's: both paths give the connection back to the pool before the next
    # request starts, so it goes on the same connection (test_pipelining.py)
    "a request sent while the lane's is in flight": Case([(G, 0.02), (G, 0.0)], [[0.1, plain(b"1")], [plain(b"2")]]),
}

# cases for fronts with bounds of their own (ODD_CONFIG): a header count above the general path's 200 for
# responses, a head size below the target's bound, a hold long enough to see what happens within it
ODD_CONFIG = dict(max_headers=300, max_head_bytes=300, head_hold_seconds=0.2, proxy_read_timeout=0.5)
FOUND_ODD = {
    # the lane bounded a response's headers by max_headers (requests'); the general path by 200
    "201 response headers": Case([(G, 0.0)], [[
        b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-R%d: r\r\n" % n for n in range(201)) + b"Content-Length: 2\r\n\r\nok"]]),
    # a head of at most max_head_bytes was taken as within every bound, but the bound counts 4 bytes a header
    # besides name and value: 60 headers `a:` (4 bytes each as sent) count 313 bytes in a head of 299, and the
    # general path answers 431 where the lane relayed the request
    "a head within max_head_bytes as sent, past it as counted": Case([(G[:-2] + b"a:\r\n" * 60 + b"\r\n", 0.0)]),
    # a head just before the read timeout: the general path's timer then waits for the body; the lane's still
    # ran from the request, and cut the response it held when it fired (with the default 5 ms hold, a head in
    # the last 5 ms before proxy_read_timeout)
    "a response head just before the read timeout, its body after": Case(
        [(G, 0.0)], [[0.42, b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\npar", 0.15, b"tial"]]),
}


@pytest.fixture(scope="module")
def fronts(tmp_path_factory):
    fronts = express_fuzz.start_fronts(str(tmp_path_factory.mktemp("fuzz")))
    yield fronts
    express_fuzz.stop_fronts(fronts)


@pytest.fixture(scope="module")
def odd_fronts(tmp_path_factory):
    fronts = express_fuzz.start_fronts(str(tmp_path_factory.mktemp("fuzz-odd")), **ODD_CONFIG)
    yield fronts
    express_fuzz.stop_fronts(fronts)


@pytest.fixture(scope="module")
def lane_counts():
    counts = express_fuzz.LaneCounts()
    yield counts
    counts.undo()


@pytest.mark.parametrize("name", list(FOUND))
def test_a_found_case_changes_no_byte_either_way(fronts, name):
    assert not express_fuzz.run(fronts, FOUND[name])


@pytest.mark.parametrize("name", list(FOUND_ODD))
def test_a_found_case_changes_no_byte_either_way_with_other_bounds(odd_fronts, name):
    assert not express_fuzz.run(odd_fronts, FOUND_ODD[name])


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_random_cases_change_no_byte_either_way(tmp_path, lane_counts, loop_kind):
    """The random cases, 0, 2, 4... on asyncio's loop and 1, 3, 5... on uvloop's. Also: once every case's client
    is gone, no connection's object (client, lane, upstream) is left alive and no descriptor is left open."""
    seed = int(os.environ.get("KAOS_FUZZ_SEED", "20240611"))
    rng = random.Random(seed)
    taken = 0
    fronts = express_fuzz.start_fronts(str(tmp_path), uvloop=loop_kind == "uvloop")
    try:
        before = express_fuzz.leftovers(fronts)
        for number in range(int(os.environ.get("KAOS_FUZZ_CASES", "40"))):
            case = express_fuzz.generate(rng)  # every case made, so that each number is the same case on both loops
            if HAVE_UVLOOP and number % 2 != LOOP_KINDS.index(loop_kind):
                continue  # the other loop's case
            differences = express_fuzz.run(fronts, case, warmed=lane_counts.reset)
            taken += lane_counts.taken
            assert not differences, f"seed {seed}, case {number}: {differences}\n{case.literal()[:3000]}"
        after = express_fuzz.leftovers(fronts)
        assert after["objects"] == before["objects"] and after["fds"] <= before["fds"], (before, after)
    finally:
        express_fuzz.stop_fronts(fronts)
    assert taken, "the lane took none of the requests: the comparison proved nothing"
