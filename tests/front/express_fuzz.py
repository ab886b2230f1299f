"""Differential fuzzing of the front's express lane (kaos_backend/front/express.py): random requests and random
endpoint behaviour, each played against a front with the lane and one without it, comparing the bytes each side
receives (the client's answer, the requests the endpoint reads, the connections it is opened) and checking that
each front is left as it was (no client, no held head, a consistent pool, nothing for the loop's exception
handler).

The cases and their generator are fuzz_cases.py's, the front in process and its scripted endpoint fuzz_world.py's;
this module plays a case against both fronts and compares.

Run a campaign from the checkout (the tests run a bounded one):

    .venv/bin/python -m tests.front.express_fuzz --cases 300 --seed 7 [--uvloop]

It prints each case whose bytes differ, as a Python literal to reduce by hand into the found corpus of
test_express_fuzz.py (cut at 3000 characters; `--save DIR` writes each whole).
"""
import argparse
import gc
import os
import random
import re
import socket
import sys
import tempfile
import time
from typing import Callable, List, Optional, Tuple

import httptools

from kaos_backend.front import routing
from tests.front.fuzz_cases import HALF_CLOSE, LEAVE, READ, Case, generate
from tests.front.fuzz_world import HANDOFF, NAME, READ_TIMEOUT, STALL, FuzzFront

SILENCE = READ_TIMEOUT + 0.6     # the client stops reading after this long without a byte


def _responses(data: bytes) -> int:
    """How many whole final responses `data` holds (from its start; a HEAD's and a 100 Continue are not counted)."""
    done = []

    class Sink:
        def on_message_complete(self):
            if parser.get_status_code() >= 200:
                done.append(1)
    parser = httptools.HttpResponseParser(Sink())
    try:
        parser.feed_data(data)
    except (httptools.HttpParserError, httptools.HttpParserUpgrade):
        pass
    return len(done)


def _requests(data: bytes) -> int:
    """How many whole requests llhttp reads in `data` (up to an error): the answers to wait for."""
    done = []

    class Sink:
        def on_message_complete(self):
            done.append(1)
    try:
        httptools.HttpRequestParser(Sink()).feed_data(data)
    except (httptools.HttpParserError, httptools.HttpParserUpgrade):
        pass
    return len(done)


WARM_UP = b"GET /" + NAME + b"/warm HTTP/1.1\r\nHost: front\r\n\r\n"


def play(front: FuzzFront, case: Case, deadline: float = 6.0, warmed: Callable[[], None] = lambda: None) -> dict:
    """Play `case` against `front` on a new connection (after a warm-up request that leaves a kept-alive
    connection to the endpoint in the pool): what the client and the endpoint received, the endpoint's new
    connections, and the front's state once the client is gone."""
    front.trust_again()
    endpoint = front.endpoint
    endpoint.drop_all()  # each case from the same start: one new kept-alive connection, made by the warm-up
    until = time.monotonic() + 3
    while front.state()["pool"] and time.monotonic() < until:
        time.sleep(0.01)
    with socket.create_connection(("127.0.0.1", front.port), timeout=5) as sock:
        sock.sendall(WARM_UP)
        warm = b""
        while _responses(warm) < 1:
            piece = sock.recv(65536)
            assert piece, "the warm-up was not answered"
            warm += piece
        time.sleep(0.02)
        warmed()
        with endpoint.lock:
            endpoint.plan = [list(script) for script in case.scripts]
        before, accepted = len(endpoint.requests), endpoint.accepted
        received = b""
        try:
            for data, pause in case.sends:
                sock.sendall(data)
                if pause:
                    time.sleep(pause)
        except OSError:
            pass
        if case.client_end == HALF_CLOSE:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        if case.client_end != LEAVE:
            expected = max(1, _requests(b"".join(data for data, _ in case.sends)))
            quiet_until = None
            silent_until = time.monotonic() + SILENCE
            sock.settimeout(0.05)
            end = time.monotonic() + deadline
            while time.monotonic() < end:
                try:
                    piece = sock.recv(65536)
                except socket.timeout:
                    now = time.monotonic()
                    if (quiet_until is not None and now >= quiet_until) or now >= silent_until:
                        break
                    continue
                except OSError:
                    break
                if not piece:
                    break
                received += piece
                silent_until = time.monotonic() + SILENCE
                if _responses(received) >= expected:
                    quiet_until = time.monotonic() + 0.15  # anything more would be extra bytes
    state = front.settle()
    time.sleep(0.05)  # the endpoint's threads record what reached them
    return {"client": received, "endpoint": endpoint.requests[before:], "connections": endpoint.accepted - accepted,
            "state": state}


def one_chunk(data: bytes) -> bytes:
    """The front's answers in `data` with each chunked body in one chunk: the general path chunks a body as its
    reads come, and how an endpoint's writes arrive in reads is the network's (and the scheduler's) doing."""
    out, rest = [], data
    while rest:
        end = rest.find(b"\r\n\r\n")
        if end < 0:
            out.append(rest)
            break
        head, rest = rest[:end + 4], rest[end + 4:]
        out.append(head)
        if b"\r\nTransfer-Encoding: chunked\r\n" not in head:
            length = re.search(rb"\r\nContent-Length: (\d+)\r\n", head)
            size = int(length.group(1)) if length else len(rest)
            out.append(rest[:size])
            rest = rest[size:]
            continue
        body, whole = b"", False
        while True:
            line = rest.find(b"\r\n")
            if line < 0:
                break
            size = int(rest[:line], 16)
            if size == 0 and rest[line:line + 4] == b"\r\n\r\n":
                rest, whole = rest[line + 4:], True
                break
            piece = rest[line + 2:line + 2 + size]
            if len(piece) < size or rest[line + 2 + size:line + 4 + size] != b"\r\n":
                body += piece
                rest = b""
                break
            body, rest = body + piece, rest[line + 4 + size:]
        out.append(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if whole else b"<cut> " + body + rest)
        if not whole:
            break
    return b"".join(out)


def compare(general: dict, lane: dict, client_end: str = READ) -> List[str]:
    """What differs between the two fronts' results (empty: nothing); chunked bodies are compared as one_chunk
    makes them. A client that half-closes has left (the front drops its request as nginx does, 499): how much of
    its answer got out before the front read its FIN is timing (the general path sends a response head and the
    first bytes of its body as they come, the lane holds a plain response's head for its whole body), so one
    front's bytes need only begin the other's."""
    differences = []
    for key in ("client", "endpoint", "connections"):
        if general[key] == lane[key]:
            continue
        if key == "client":
            ours, theirs = one_chunk(general[key]), one_chunk(lane[key])
            if ours == theirs or (client_end == HALF_CLOSE and (ours.startswith(theirs) or theirs.startswith(ours))):
                continue
        differences.append(f"{key}: general {general[key]!r:.600} / lane {lane[key]!r:.600}")
    for result, which in ((general, "general"), (lane, "lane")):
        state = result["state"]
        if state["clients"] or state["holds"] or state["body holds"] or state["pool"] != state["pool entries"]:
            differences.append(f"{which} front not back to its baseline: {state}")
    return differences


def leftovers(fronts: Tuple[FuzzFront, FuzzFront]) -> dict:
    """Objects of the front's connections still alive (after a collection) and descriptors open, once every client
    is gone and the endpoints' connections have ended: what a run of cases must not add to."""
    from kaos_backend.front.client import Client
    from kaos_backend.front.express import Express
    from kaos_backend.front.express_response import ResponseReading
    from kaos_backend.front.upstream import Upstream
    for front in fronts:
        front.settle()
        front.endpoint.drop_all()
    until = time.monotonic() + STALL + 1
    while any(front.endpoint.open or front.state()["pool"] for front in fronts) and time.monotonic() < until:
        time.sleep(0.05)
    for front in fronts:
        front.call(gc.collect)
    kinds = (Client, Express, ResponseReading, Upstream)
    alive = [type(item).__name__ for item in gc.get_objects() if isinstance(item, kinds)]
    return {"objects": sorted(alive), "fds": len(os.listdir("/proc/self/fd"))}


def run(fronts: Tuple[FuzzFront, FuzzFront], case: Case, warmed: Callable[[], None] = lambda: None,
        tries: int = 3) -> List[str]:
    """Play `case` on the front without the lane, then on the one with it (`warmed()` called once its warm-up is
    answered); what differs (empty: nothing). A case whose client and endpoint act at about the same moment (the
    client leaving as the answer comes) may go either way on either front: it counts as differing only when it
    differs `tries` times in a row (a difference the lane makes is there every time); what reaches a loop's
    exception handler counts at once."""
    general_front, lane_front = fronts
    for _ in range(tries):
        general = play(general_front, case)
        lane = play(lane_front, case, warmed=warmed)
        differences = compare(general, lane, case.client_end)
        errors = []
        for front, which in ((general_front, "general"), (lane_front, "lane")):
            if front.errors:
                errors.append(f"{which} loop errors: {front.errors!r:.600}")
                front.errors.clear()
        if errors or not differences:
            return errors + differences
    return differences


def start_fronts(directory: str, uvloop: bool = False, **config) -> Tuple[FuzzFront, FuzzFront]:
    routing.API_HANDOFFS[HANDOFF.lower()] = lambda client, request, response: False
    return FuzzFront(directory, False, uvloop, **config), FuzzFront(directory, True, uvloop, **config)


def stop_fronts(fronts: Tuple[FuzzFront, FuzzFront]) -> None:
    for front in fronts:
        front.stop()
    routing.API_HANDOFFS.pop(HANDOFF.lower(), None)


class LaneCounts:
    """Counts what the lane did (its requests taken, declined, handed over), by wrapping Express's methods."""

    def __init__(self):
        from kaos_backend.front import express
        self.taken = self.declined = self.handed = 0
        self.express = express
        self.relay, self.hand_over = express.Express.relay, express.Express._hand_over
        counts = self

        def relay(lane, data):
            taken = counts.relay(lane, data)
            if taken:
                counts.taken += 1
            else:
                counts.declined += 1
            return taken

        def hand_over(lane):
            counts.handed += 1
            return counts.hand_over(lane)
        express.Express.relay, express.Express._hand_over = relay, hand_over

    def reset(self):
        self.taken = self.declined = self.handed = 0

    def undo(self):
        self.express.Express.relay, self.express.Express._hand_over = self.relay, self.hand_over

    def __str__(self):
        return f"lane: {self.taken} taken ({self.handed} handed over), {self.declined} declined"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument("--save", metavar="DIR", help="write each differing case whole to DIR/case-N.py")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    failures = 0
    started = time.monotonic()
    counts, total = LaneCounts(), [0, 0, 0]
    with tempfile.TemporaryDirectory() as directory:
        fronts = start_fronts(directory, args.uvloop)
        try:
            before = leftovers(fronts)
            for number in range(args.cases):
                case = generate(rng)
                differences = run(fronts, case, warmed=counts.reset)
                total = [total[0] + counts.taken, total[1] + counts.handed, total[2] + counts.declined]
                if differences:
                    failures += 1
                    print(f"case {number} differs:\n  " + "\n  ".join(differences)
                          + f"\n  {case.literal()[:3000]}\n", flush=True)
                    if args.save:
                        with open(os.path.join(args.save, f"case-{number}.py"), "w") as saved:
                            saved.write(case.literal() + "\n")
            after = leftovers(fronts)
            if after["objects"] != before["objects"] or after["fds"] > before["fds"]:
                failures += 1
                print(f"left behind: before {before}, after {after}")
        finally:
            stop_fronts(fronts)
            counts.undo()
    print(f"{args.cases} cases, {failures} differing, {time.monotonic() - started:.0f} s; the lane took {total[0]} "
          f"of their requests ({total[1]} handed over), declined {total[2]} reads")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
