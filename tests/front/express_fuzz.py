"""Differential fuzzing of the front's express lane (kaos_backend/front/express.py): random requests and random
endpoint behaviour, each played against a front with the lane and one without it, comparing the bytes each side
receives (the client's answer, the requests the endpoint reads, the connections it is opened) and checking that
each front is left as it was (no client, no held head, a consistent pool, nothing for the loop's exception
handler).

A case is `Case(sends, scripts, client_end)`: the bytes the client sends, as a list of (bytes, pause before the
next send in seconds); the endpoint's behaviour for its 1st, 2nd... request (each a list of steps: bytes to
write, a float to sleep, CLOSE or RESET to end the connection); and what the client does once it has sent
(READ its answers, LEAVE at once, HALF_CLOSE its side). `generate(rng)` makes one from a random.Random.

Run a campaign from the checkout (the tests run a bounded one):

    .venv/bin/python -m tests.front.express_fuzz --cases 300 --seed 7 [--uvloop]

It prints each case whose bytes differ, as Python literals to paste into the found corpus of
test_express_fuzz.py.
"""
import argparse
import asyncio
import gc
import os
import random
import re
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple

import httptools

from kaos_backend.front import routing
from kaos_backend.front.config import FrontConfig
from kaos_backend.front.express_response import EXPRESS_RESPONSE_BYTES
from kaos_backend.front.server import Front

NAME = b"serve-ws-aaaaaa"
HANDOFF = b"X-Fuzz-Handoff"      # a hand-off header name: never from an endpoint, never to one
CLOSE, RESET = "close", "reset"  # script steps that end the endpoint's connection (FIN, or RST)
READ, LEAVE, HALF_CLOSE = "read", "leave", "half-close"
HOLD = 0.05                      # the fronts' head_hold_seconds
READ_TIMEOUT = 1.0               # their proxy_read_timeout: a stall is well past it, a pause well within
STALL = 2.2
SILENCE = READ_TIMEOUT + 0.6     # the client stops reading after this long without a byte
MAX_BODY = 1024 * 1024           # serve_max_body_mb=1
CONFIG = dict(head_hold_seconds=HOLD, proxy_read_timeout=READ_TIMEOUT, serve_max_body_mb=1, max_headers=20,
              max_head_bytes=4096, max_header_field_bytes=1024, max_target_bytes=512, endpoint_cache_seconds=600,
              upstream_keepalive_timeout=60, client_header_timeout=10, client_body_timeout=10)


def plain(body: bytes = b'{"ok": true}') -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


@dataclass
class Case:
    sends: List[Tuple[bytes, float]]
    scripts: List[list] = field(default_factory=list)
    client_end: str = READ

    def literal(self) -> str:
        return f"Case({self.sends!r}, {self.scripts!r}, {self.client_end!r})"


# -- the endpoint
class ScriptedEndpoint:
    """A keep-alive HTTP/1.1 server on a unix socket. Each request it reads (head, then a Content-Length body: the
    front frames every body so) is recorded, then answered by the next script of `plan` (a plain 200 once the
    plan is used up). `accepted` counts its connections; bytes left unparsed when a connection ends are
    recorded as ("partial", bytes)."""

    def __init__(self, path: str):
        self.path = path
        self.plan: List[list] = []
        self.requests: List[object] = []
        self.accepted = 0
        self.open: set = set()
        self.lock = threading.Lock()
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
            with self.lock:
                self.accepted += 1
                self.open.add(connection)
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _next_script(self) -> list:
        with self.lock:
            return self.plan.pop(0) if self.plan else [plain()]

    def _serve(self, connection: socket.socket):
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = connection.recv(65536)
                    if not data:
                        if buffer:
                            self.requests.append(("partial", buffer))
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
                        self.requests.append(("partial", head + b"\r\n\r\n" + rest))
                        return
                    rest += data
                self.requests.append(head + b"\r\n\r\n" + rest[:length])
                buffer = rest[length:]
                for step in self._next_script():
                    if isinstance(step, (int, float)):
                        time.sleep(step)
                    elif step == CLOSE:
                        return
                    elif step == RESET:
                        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                        return
                    else:
                        connection.sendall(step)
        except OSError:
            return
        finally:
            with self.lock:
                self.open.discard(connection)
            connection.close()

    def drop_all(self) -> None:
        """End every open connection (a script still sleeping on one fails when it next writes)."""
        with self.lock:
            connections, self.plan = list(self.open), []
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.server.close()


# -- a front in process
class FuzzFront:
    """A Front on 127.0.0.1 in a thread of its own, its workload NAME at a ScriptedEndpoint; `errors` collects what
    reaches the loop's exception handler (a bug: nothing may)."""

    def __init__(self, directory: str, lane: bool, uvloop: bool = False, **config):
        self.endpoint = ScriptedEndpoint(os.path.join(directory, f"endpoint-{int(lane)}.sock"))
        self.config = FrontConfig(**{**CONFIG, **config, "express": lane})
        address = ("PIPELINE_RUNNING", "127.0.0.1", 8080, self.endpoint.path)
        if uvloop:
            import uvloop as module
            self.loop = module.new_event_loop()
        else:
            self.loop = asyncio.new_event_loop()
        self.errors: List[dict] = []
        self.loop.set_exception_handler(lambda loop, context: self.errors.append(context))
        self.front = Front(self.loop, "/nonexistent/api.sock", {NAME.decode(): address}.get, self.config)
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

    def call(self, function: Callable[[], object], timeout: float = 5):
        """`function()` run on the front's loop; its result."""
        async def run():
            return function()
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=timeout)

    def state(self) -> dict:
        """What must be back to its baseline once a case's client is gone."""
        def read():
            pool = self.front.pool
            return {"clients": len(self.front.clients), "holds": len(self.front.holds.waiting),
                    "pool": pool.count, "pool entries": sum(len(queue) for queue in pool.idle.values())}
        return self.call(read)

    def settle(self, timeout: float = 4) -> dict:
        """Wait until no client connection is open (the case's client closed); the state then."""
        deadline = time.monotonic() + timeout
        state = self.state()
        while state["clients"] and time.monotonic() < deadline:
            time.sleep(0.02)
            state = self.state()
        return state

    def trust_again(self):
        self.call(self.front.pool.distrusted.clear)

    def stop(self):
        self.loop.call_soon_threadsafe(self.task.cancel)
        self.thread.join(timeout=5)
        self.endpoint.close()


# -- the client
def _responses(data: bytes) -> int:
    """How many whole responses `data` holds (from its start; a HEAD's is not counted)."""
    done = []

    class Sink:
        def on_message_complete(self):
            done.append(1)
    try:
        httptools.HttpResponseParser(Sink()).feed_data(data)
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


def compare(general: dict, lane: dict) -> List[str]:
    """What differs between the two fronts' results (empty: nothing); chunked bodies are compared as one_chunk
    makes them."""
    differences = []
    for key in ("client", "endpoint", "connections"):
        if general[key] != lane[key] and (key != "client" or one_chunk(general[key]) != one_chunk(lane[key])):
            differences.append(f"{key}: general {general[key]!r:.600} / lane {lane[key]!r:.600}")
    for result, which in ((general, "general"), (lane, "lane")):
        state = result["state"]
        if state["clients"] or state["holds"] or state["pool"] != state["pool entries"]:
            differences.append(f"{which} front not back to its baseline: {state}")
    return differences


# -- generating cases
_METHODS = [b"GET"] * 6 + [b"POST"] * 6 + [b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"HEAD", b"PROPFIND", b"get",
                                          b"CONNECT", b"TRACE"]
_SEGMENTS = [b"invocations", b"ping", b"", b".", b"..", b"%2e%2e", b"%2F", b"a\\b", b"a;b", b"x#frag", b"%41",
             b"\x80\xff", b"a b", b"\x7f", b"\t", b"api", b"-", b"~user", b"/", b"..;"]
_QUERIES = [b"", b"", b"?", b"?a=1", b"?x=/../api", b"?%2e%2e", b"?q=" + b"q" * 500, b"?#"]
_NAMES = [NAME] * 12 + [b"serve-ws-aaaaab", b"notebook-ws-u", b"Serve-ws-aaaaaa", b"serve-ws-aaaaaa.", b"serve-"]
_VERSIONS = [b"1.1"] * 12 + [b"1.0", b"1.2", b"2.0", b"0.9"]


def _case_variants(rng: random.Random, name: bytes) -> bytes:
    return bytes(c ^ 0x20 if rng.random() < 0.5 and chr(c).isalpha() else c for c in name)


def _header(rng: random.Random, name: bytes, value: bytes) -> bytes:
    if rng.random() < 0.3:
        name = _case_variants(rng, name)
    separator = rng.choice([b": ", b": ", b":", b":  ", b": \t"])
    return name + separator + value + rng.choice([b"", b"", b"", b" "]) + b"\r\n"


_BENIGN = [(b"Content-Type", b"application/json"), (b"Accept", b"*/*"), (b"User-Agent", b"fuzz"),
           (b"Authorization", b"Bearer t"), (b"Cookie", b"a=1"), (b"X-Obs", b"caf\xe9"), (b"X-Empty", b""),
           (b"X-Dup", b"1"), (b"X-Dup", b"2"), (b"Connection", b"keep-alive"), (b"Keep-Alive", b"timeout=5"),
           (b"TE", b"trailers"), (b"Upgrade", b"websocket"), (b"X-Token", b"platform-secret"), (b"Idempotency-Key", b"k")]


def _request_headers(rng: random.Random, body: bytes, wild: bool) -> Tuple[List[bytes], bytes]:
    """Header lines and the body as framed (chunked or not)."""
    lines = []
    hosts = rng.choices([0, 1, 2], [1, 20, 1])[0] if wild else 1
    lines += [_header(rng, b"Host", rng.choice([b"front", b"", b"a:1", b"\x80"])) for _ in range(hosts)]
    pool = _BENIGN + [(b"x-tOKEN", b"s"), (b"Trailer", b"X-T"), (HANDOFF, b"/api/secret"), (b"X-Hop", b"1"),
                      (b"Close", b"1"), (b"Keep-alive", b"1"), (b"Proxy-Connection", b"keep-alive"),
                      (b"Proxy-Authorization", b"x"), (b"Expect", rng.choice([b"100-continue", b"x"])),
                      (b"Connection", rng.choice([b"keep-alive", b"Keep-Alive", b"close", b"X-Hop",
                                                  b"keep-alive, X-Hop", b"upgrade", b"", b"keep-alive,",
                                                  b"close, keep-alive", b"Close"])),
                      (b"Transfer-Encoding", rng.choice([b"chunked", b"gzip", b"gzip, chunked", b"chunked, chunked"])),
                      (b"X-Nul", b"a\x00b"), (b"X-CR", b"a\rb"), (b"Bad Name", b"1")]
    for _ in range(rng.choices([0, 1, 3, 6], [3, 4, 3, 1])[0]):
        lines.append(_header(rng, *rng.choice(pool if wild else _BENIGN)))
    if rng.random() < 0.08:  # many headers, near max_headers (20)
        lines += [_header(rng, b"X-M%d" % n, b"m") for n in range(rng.randint(14, 22))]
    if rng.random() < 0.06:  # a large header or head, near max_header_field_bytes (1024) and max_head_bytes (4096)
        size = rng.choice([1015, 1016, 1017, 1018, 1100])
        lines += [_header(rng, b"X-Big%d" % n, b"b" * (size - 8)) for n in range(rng.choice([1, 3, 4, 5]))]
    chunked = any(line.lower().startswith(b"transfer-encoding") for line in lines)
    framing = rng.random()
    if chunked and framing < 0.8:
        if body:
            cut = rng.randint(0, len(body))
            pieces = [p for p in (body[:cut], body[cut:]) if p]
            body = b"".join(b"%x%s\r\n%s\r\n" % (len(p), rng.choice([b"", b";ext=1"]), p) for p in pieces)
        body += b"0\r\n" + rng.choice([b"", b"X-Trailer: 1\r\n"]) + b"\r\n"
    elif framing < 0.85 or body:
        length = len(body)
        value = b"%d" % length
        if wild:
            value = rng.choices([value, b"%d" % (length + 1), b"%d" % max(0, length - 1), b"+%d" % length,
                                 b"0%d" % length, b"%d, %d" % (length, length), b" %d" % length],
                                [30, 1, 1, 1, 1, 1, 1])[0]
        lines.append(_header(rng, b"Content-Length", value))
        if wild and rng.random() < 0.04:
            lines.append(_header(rng, b"Content-Length", rng.choice([b"%d" % length, b"%d" % (length + 2)])))
    rng.shuffle(lines)
    return lines, body


def _body(rng: random.Random) -> bytes:
    size = rng.choices([0, rng.randint(1, 300), rng.randint(300, 70000), rng.choice(
        [EXPRESS_RESPONSE_BYTES - 1, EXPRESS_RESPONSE_BYTES, EXPRESS_RESPONSE_BYTES + 1, 200 * 1024,
         MAX_BODY, MAX_BODY + 1])], [5, 5, 2, 1])[0]
    if size and rng.random() < 0.2:  # a request smuggled in the body
        smuggled = b"GET /api/workspace HTTP/1.1\r\nHost: x\r\nX-Token: t\r\n\r\n"
        return (smuggled * (size // len(smuggled) + 1))[:size]
    return bytes(rng.getrandbits(8) for _ in range(min(size, 64))) * (size // 64 + 1) if size else b""


def request(rng: random.Random) -> bytes:
    """A request to the endpoint: half of them plain (the lane's), the others with anything odd."""
    wild = rng.random() < 0.3
    method = rng.choice(_METHODS) if wild else rng.choice([b"GET", b"POST", b"POST", b"PUT", b"DELETE"])
    body = _body(rng) if method not in (b"GET", b"HEAD", b"OPTIONS") or rng.random() < 0.1 else b""
    name = rng.choice(_NAMES) if wild else NAME
    segments = _SEGMENTS if wild else [b"invocations", b"ping", b"", b"a;b", b"%41", b"x#frag", b"\x80\xff"]
    path = b"".join(b"/" + rng.choice(segments) for _ in range(rng.choices([0, 1, 2, 3], [1, 6, 3, 1])[0]))
    if rng.random() < 0.1:
        path = b"/" + path
    target = b"/" + name + path + rng.choice(_QUERIES)
    lines, body = _request_headers(rng, body, wild)
    head = (method + b" " + target + b" HTTP/" + (rng.choice(_VERSIONS) if wild else b"1.1") + b"\r\n"
            + b"".join(lines) + b"\r\n")
    if wild and rng.random() < 0.05:
        head = head.replace(b"\r\n", b"\n")
    return head + body


_STATUSES = [b"200 OK"] * 10 + [b"201 Created", b"404 Not Found", b"500 Internal Server Error", b"418 I'm a teapot",
                                b"200 ", b"200", b"599 Odd", b"600 Too Far", b"099 Low", b"205 Reset Content",
                                b"302 Found", b"200 O\x80K"]
_INTERIM = [b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"]
_BODYLESS = [b"HTTP/1.1 204 No Content\r\nServer: s\r\n\r\n", b"HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n",
             b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"]


def response(rng: random.Random) -> bytes:
    """One response, its framing mostly right."""
    if rng.random() < 0.06:
        return rng.choice(_BODYLESS)
    body = rng.choices([b"", b'{"result": [3]}', b"r" * rng.randint(100, 3000),
                        b"R" * rng.choice([EXPRESS_RESPONSE_BYTES - 1, EXPRESS_RESPONSE_BYTES,
                                           EXPRESS_RESPONSE_BYTES + 1])], [2, 10, 3, 1])[0]
    lines = []
    pool = [(b"Server", b"gunicorn"), (b"Content-Type", b"application/json"), (b"Keep-Alive", b"timeout=2"),
            (b"Connection", rng.choice([b"keep-alive", b"close", b"X-Hop", b"keep-alive, X-Hop", b"Close", b"",
                                        b"upgrade"])),
            (b"X-Hop", b"1"), (b"Close", b"1"), (b"Set-Cookie", b"a=1"), (b"Set-Cookie", b"b=2"), (HANDOFF, b"/x"),
            (b"Trailer", b"X-T"), (b"Upgrade", b"h2"), (b"Proxy-Connection", b"close"), (b"X-Obs", b"\xe9"),
            (b"TE", b"x"), (b"Transfer-Encoding", b"gzip")]
    for _ in range(rng.choices([0, 1, 3, 6], [3, 5, 3, 1])[0]):
        lines.append(_header(rng, *rng.choice(pool)))
    if rng.random() < 0.05:  # many response headers, near the lane's and the general path's counts
        lines += [_header(rng, b"X-R%d" % n, b"r") for n in range(rng.choice([19, 20, 21, 150, 199, 200, 201]))]
    if rng.random() < 0.04:  # a large response head, near the general path's 64 KiB
        size = rng.choice([60 * 1024, 64 * 1024, 70 * 1024])
        lines += [_header(rng, b"X-Big%d" % n, b"b" * 4000) for n in range(size // 4012)]
    framing = rng.random()
    if framing < 0.8:
        length = rng.choices([len(body), len(body) + 1, max(0, len(body) - 1)], [30, 1, 1])[0]
        lines.append(_header(rng, b"Content-Length", b"%d" % length))
        if rng.random() < 0.03:
            lines.append(_header(rng, b"Content-Length", rng.choice([b"%d" % length, b"%d" % (length + 1)])))
    elif framing < 0.93:
        lines.append(_header(rng, b"Transfer-Encoding", b"chunked"))
        body = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
    rng.shuffle(lines)
    version = rng.choices([b"HTTP/1.1", b"HTTP/1.0"], [12, 1])[0]
    head = version + b" " + rng.choice(_STATUSES) + b"\r\n" + b"".join(lines) + b"\r\n"
    if rng.random() < 0.05:
        head = rng.choice(_INTERIM) + head
    return head + body


def script(rng: random.Random) -> list:
    """The endpoint's answer to one request: a response in one or more writes with pauses, maybe followed by
    stray bytes, a close or a reset; sometimes no answer, a response cut short, or a stall past the read
    timeout."""
    kind = rng.choices(["plain", "none", "cut", "stall", "interim stall"], [70, 4, 10, 8, 4])[0]
    if kind == "none":
        return [rng.choice([CLOSE, RESET])]
    whole = response(rng)
    if kind == "interim stall":
        whole = rng.choice(_INTERIM) + whole[:rng.randint(0, len(whole) - 1)]
    elif kind == "cut":
        whole = whole[:rng.randint(1, len(whole) - 1)]
    cuts = sorted(rng.sample(range(1, len(whole)), min(len(whole) - 1, rng.choices([0, 1, 2, 3], [6, 4, 2, 1])[0])))
    steps: list = []
    before_head, start = 0.0, 0
    for cut in cuts + [len(whole)]:
        steps.append(whole[start:cut])
        if cut < len(whole):
            pause = rng.choice([0.0, 0.01, 0.03, HOLD - 0.01, HOLD + 0.02, 0.1, 0.3])
            if b"\r\n\r\n" not in whole[:cut]:
                pause = min(pause, max(0.0, 0.4 - before_head))
                before_head += pause
            steps.append(pause)
        start = cut
    if kind in ("cut", "interim stall"):
        steps += [rng.choice([0.0, 0.1, STALL, STALL]), rng.choice([CLOSE, RESET])]
    elif kind == "stall":
        steps.insert(rng.randrange(len(steps) + 1), STALL)
    after = rng.random()
    if after < 0.06:
        steps.append(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray")  # in the same write or just after
    elif after < 0.1:
        steps += [0.1, b"late stray bytes"]
    elif after < 0.16:
        steps.append(rng.choice([CLOSE, RESET]))
    return steps


def generate(rng: random.Random) -> Case:
    """A random case: 1 to 3 requests, pipelined (sent without waiting) or one after the other's answer, split at
    random points."""
    count = rng.choices([1, 2, 3], [12, 3, 1])[0]
    sends = []
    mode = rng.random()
    if mode < 0.4:  # one after the other, each whole in one send, waiting for the answer
        for _ in range(count):
            sends.append((request(rng), rng.choice([0.2, 0.4])))
    elif mode < 0.6:  # the next sent while the one before is in flight (pipelined, not in the same read)
        count = max(2, count)
        for _ in range(count):
            sends.append((request(rng), rng.choice([0.0, 0.005, 0.02, HOLD, 0.1])))
    else:
        data = b"".join(request(rng) for _ in range(count))
        splits = rng.choices([0, 1, 2, 4], [20, 3, 2, 1])[0]
        cuts = sorted(set(rng.sample(range(1, len(data)), min(len(data) - 1, splits))))
        start = 0
        for cut in cuts + [len(data)]:
            sends.append((data[start:cut], rng.choice([0.0, 0.0, 0.01, 0.05])))
            start = cut
    sends[-1] = (sends[-1][0], 0.0)
    scripts = [script(rng) for _ in range(count + 1)]  # (+1: a retried request)
    client_end = rng.choices([READ, LEAVE, HALF_CLOSE], [20, 1, 1])[0]
    return Case(sends, scripts, client_end)


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
        differences = compare(general, lane)
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
