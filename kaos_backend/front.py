"""The backend's front door: one asyncio process that reads each HTTP/1.1 request head on the backend's public
address, sends `/serve-<ws>-<hex6>/<path>` straight to that endpoint's own server (the serving gateway) and
relays everything else to the API's gunicorn on an internal socket.

Why a process of its own rather than a WSGI middleware: every prediction through gunicorn costs the parsing,
thread hand-off and WSGI plumbing of a request (~220 µs of CPU), more than the whole budget of the gateway on a
small machine. Here a request costs one head parse, one connection to the endpoint (its server closes after
every reply) and two relays of bytes, with flow control both ways; bodies of any size are streamed, never
buffered whole.

Behaviour of the gateway (docs/rest-api.md): unknown endpoint 404 PIPELINE_NOT_FOUND, an endpoint not
accepting connections 503 ENDPOINT_UNAVAILABLE, an endpoint that breaks off before answering 502
ENDPOINT_ERROR; hop-by-hop headers are not forwarded; the path after the endpoint's name is forwarded with its
query string as it was sent. Endpoint addresses come from `lookup(name)` (a blocking SQL query, run in a
thread), cached for a second.
"""
import asyncio
import json
import os
import re
import signal
import socket
import sys
import time
from typing import Callable, Dict, List, Optional, Tuple

from kaos_backend import log_handoff
from kaos_backend.front_follow import Follows, finished_query

HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
                        b"trailer", b"trailers", b"transfer-encoding", b"upgrade", b"proxy-connection"})
MAX_HEAD = 64 * 1024         # a request's or a response's request/status line and headers
MAX_LINE = 8 * 1024          # a chunk-size line or a trailer line
HIGH_WATER = 256 * 1024      # bytes queued for a peer before the other side stops being read
CACHE_SECONDS = 1.0
QUICK_CONNECT_SECONDS = 0.005
API_START_SECONDS = 10.0     # how long a request waits for the API server's socket to accept connections
HOLD_BODY = 64 * 1024        # a request body up to this size is read whole before the request goes upstream
KEEPALIVE_SECONDS = 75.0     # a client connection idle this long between requests is closed
SERVE_PREFIX = b"/serve-"
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_TOKEN = re.compile(rb"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_HEX = frozenset(b"0123456789abcdefABCDEF")

Address = Tuple[str, Optional[str], Optional[int]]  # (state[: reason], host, port): port None while not running
_UNKNOWN = object()


class ProtocolError(Exception):
    """A message that cannot be relayed safely: malformed framing, a head or line too long."""


class Chunked:
    """Finds where a chunked body ends as its bytes go by (they are relayed as they are, chunked)."""
    __slots__ = ("state", "remaining", "line")
    SIZE, DATA, DATA_END, TRAILER = range(4)

    def __init__(self):
        self.state, self.remaining, self.line = self.SIZE, 0, b""

    def feed(self, data, start: int = 0) -> int:
        """The offset in `data` just past the body's end, or -1 when the body goes on past `data`."""
        position, size = start, len(data)
        while position < size:
            if self.state == self.DATA:
                take = min(self.remaining, size - position)
                position += take
                self.remaining -= take
                if not self.remaining:
                    self.state = self.DATA_END
                continue
            newline = data.find(b"\n", position)
            if newline < 0:
                self.line += bytes(data[position:])
                if len(self.line) > MAX_LINE:
                    raise ProtocolError("chunk line too long")
                return -1
            line = (self.line + bytes(data[position:newline])).strip()
            self.line = b""
            position = newline + 1
            if self.state == self.SIZE:
                digits = line.split(b";", 1)[0].strip()
                if not digits or len(digits) > 16 or not _HEX.issuperset(digits):
                    raise ProtocolError("bad chunk size")
                self.remaining = int(digits, 16)
                self.state = self.DATA if self.remaining else self.TRAILER
            elif self.state == self.DATA_END:
                if line:
                    raise ProtocolError("chunk data longer than its size")
                self.state = self.SIZE
            elif not line:  # TRAILER: the empty line ends the message
                return position
        return -1


def _parse_head(head: bytes) -> Tuple[List[bytes], List[Tuple[bytes, bytes]]]:
    """(the start line's parts, [(lowercase name, value, the line as sent)]) of a head without its blank line."""
    lines = head.split(b"\n")
    start = lines[0].rstrip(b"\r").split(b" ", 2)
    headers = []
    for line in lines[1:]:
        line = line.rstrip(b"\r")
        if line[:1] in (b" ", b"\t"):
            raise ProtocolError("folded header line")
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.match(name):
            raise ProtocolError("bad header line")
        headers.append((name.lower(), value.strip(b" \t"), line))
    return start, headers


def _framing(headers) -> Tuple[Optional[int], bool, set]:
    """(Content-Length, chunked, Connection tokens) of a message; conflicting or bad framing is an error."""
    length, chunked, connection = None, False, set()
    for name, value, _ in headers:
        if name == b"content-length":
            if not value.isdigit() or (length is not None and int(value) != length):
                raise ProtocolError("bad Content-Length")
            length = int(value)
        elif name == b"transfer-encoding":
            codings = [coding.strip().lower() for coding in value.split(b",")]
            if codings[-1:] != [b"chunked"] or chunked:
                raise ProtocolError("unsupported Transfer-Encoding")
            chunked = True
        elif name == b"connection":
            connection.update(token.strip().lower() for token in value.split(b","))
    if chunked and length is not None:
        raise ProtocolError("both Content-Length and Transfer-Encoding")
    return length, chunked, connection


def json_response(status: int, reason: str, code: str, message: str, close: bool = False) -> bytes:
    body = json.dumps({"error_code": code, "message": message}).encode()
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"{'Connection: close' + chr(13) + chr(10) if close else ''}\r\n").encode("latin-1") + body


class Endpoints:
    """Endpoint addresses by name: `lookup(name)` (blocking) runs in a thread, answers are kept a second."""

    def __init__(self, lookup: Callable[[str], Optional[Address]], loop: asyncio.AbstractEventLoop):
        self.lookup = lookup
        self.loop = loop
        self.cache: Dict[str, Tuple[float, Optional[Address]]] = {}
        self.pending: Dict[str, asyncio.Future] = {}

    def cached(self, name: str):
        """The address if known and fresh, else _UNKNOWN."""
        entry = self.cache.get(name)
        if entry is not None and time.monotonic() - entry[0] < CACHE_SECONDS:
            return entry[1]
        return _UNKNOWN

    def forget(self, name: str) -> None:
        self.cache.pop(name, None)

    async def get(self, name: str) -> Optional[Address]:
        entry = self.cached(name)
        if entry is not _UNKNOWN:
            return entry
        future = self.pending.get(name)
        if future is None:
            future = self.loop.run_in_executor(None, self.lookup, name)
            self.pending[name] = future
            try:
                address = await future
            finally:
                self.pending.pop(name, None)
            self.cache[name] = (time.monotonic(), address)
            return address
        return await asyncio.shield(future)


class Upstream(asyncio.Protocol):
    """One request's connection to an endpoint or to the API: sends the request, relays the response."""
    __slots__ = ("client", "transport", "method", "buffer", "head_done", "length", "chunked", "until_close",
                 "done", "received", "out", "handoff")

    def __init__(self, client: "Client", method: bytes):
        self.client = client
        self.transport = None
        self.method = method
        self.buffer = bytearray()
        self.head_done = False
        self.length = None
        self.chunked = None
        self.until_close = False
        self.done = False
        self.received = False
        self.out = None    # the response head for the client, sent with the first bytes of the body
        self.handoff = None  # the API's X-Kaos-Follow value: the front streams that log (kaos_backend.front_follow)

    def connection_made(self, transport):
        self.transport = transport
        transport.set_write_buffer_limits(HIGH_WATER)

    def pause_writing(self):
        self.client.upstream_full(True)

    def resume_writing(self):
        self.client.upstream_full(False)

    def data_received(self, data):
        self.received = True
        if self.done:
            return
        if not self.head_done:
            self.buffer += data
            try:
                if not self._head():
                    return
            except ProtocolError as error:
                self.done = True
                self.transport.abort()
                self.client.upstream_broke(str(error), answered=False)
                return
            data, self.buffer = bytes(self.buffer), None
            if self.handoff is not None:
                self.done = True
                self.transport.close()
                self.client.hand_off(self.handoff, self.out)
                return
            if not data and self.length:
                # a body of known size is right behind (gunicorn sends head and body apart): the head waits
                # for it; a streamed answer's head (chunked, until close) goes out at once
                return
        if self.out is not None:
            head, self.out = self.out, None
            self._body(head + data, len(head))  # one write to the client for the head and the body's start
            return
        self._body(data)

    def _head(self) -> bool:
        """Parse the status line and headers once they are all here and send the client its head."""
        client = self.client
        while True:
            match = _HEAD_END.search(self.buffer)
            if match is None:
                if len(self.buffer) > MAX_HEAD:
                    raise ProtocolError("response head too long")
                return False
            start, headers = _parse_head(bytes(self.buffer[:match.start()]))
            del self.buffer[:match.end()]
            if len(start) < 2 or not start[0].startswith(b"HTTP/") or len(start[1]) != 3 or not start[1].isdigit():
                raise ProtocolError("bad status line")
            status = int(start[1])
            if 100 <= status < 200 and status != 101:
                if status == 100 and client.http11:  # the answer to Expect: 100-continue
                    client.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                continue
            break
        length, chunked, connection = _framing(headers)
        if self.method == b"HEAD" or status in (204, 304) or status < 200:
            length, chunked = 0, False
        elif not chunked and length is None:
            self.until_close = True
        out = [b"HTTP/1.1 " + start[1] + b" " + (start[2] if len(start) > 2 else b"")]
        handoff = next((value for name, value, _ in headers if name == log_handoff.HEADER_NAME), None)
        if handoff is not None and status == 200 and client.name is None and client.front.follows is not None:
            self.handoff = handoff  # honoured from the API's socket only; from anywhere the header is dropped
        for name, _, line in headers:
            if name not in HOP_BY_HOP and name != log_handoff.HEADER_NAME and not (
                    self.handoff is not None and name == b"content-length"):
                out.append(line)
        if self.handoff is not None:  # the follow's own framing: chunks, or the body until close for HTTP/1.0
            length, self.until_close = 0, False
            if client.http11:
                out.append(b"Transfer-Encoding: chunked")
            else:
                client.keep_alive = False
        if chunked:
            if client.http11:
                out.append(b"Transfer-Encoding: chunked")
                self.chunked = Chunked()
            else:  # an HTTP/1.0 client cannot read chunks: this is not worth a de-chunker
                raise ProtocolError("chunked response to an HTTP/1.0 client")
        self.length = length
        if self.until_close:
            client.keep_alive = False
        if not client.keep_alive:
            out.append(b"Connection: close")
        elif not client.http11:
            out.append(b"Connection: keep-alive")
        self.head_done = True
        self.out = b"\r\n".join(out) + b"\r\n\r\n"
        return True

    def _body(self, data, start: int = 0) -> None:
        """Relay `data[start:]`, bytes of the body (`data[:start]` is the response head, relayed with them)."""
        client = self.client
        if len(data) == start:
            if start:
                client.write(data)
            if self.length == 0:
                self._complete()
            return
        if self.chunked is not None:
            try:
                end = self.chunked.feed(data, start)
            except ProtocolError:
                self.done = True
                self.transport.abort()
                client.abort()
                return
            if end < 0:
                client.write(data)
                return
            client.write(data[:end])
            self._complete()
        elif self.length is not None:
            size = len(data) - start
            if size < self.length:
                self.length -= size
                client.write(data)
                return
            client.write(data[:start + self.length] if size > self.length else data)
            self._complete()
        else:
            client.write(data)

    def _complete(self) -> None:
        self.done = True
        self.transport.close()
        self.client.response_done(self)

    def eof_received(self):
        return False  # close our side too: connection_lost follows

    def connection_lost(self, exc):
        if self.done:
            return
        self.done = True
        if self.head_done and self.until_close:
            if self.out is not None:
                self.client.write(self.out)
            self.client.response_done(self)
        elif self.head_done:
            self.client.abort()  # the body ended early: so must the client's connection
        else:
            self.client.upstream_broke(type(exc).__name__ if exc else "connection closed", answered=self.received)


class Client(asyncio.Protocol):
    """One client connection: requests one after another (pipelined ones wait), each relayed upstream."""

    def __init__(self, front: "Front"):
        self.front = front
        self.loop = front.loop
        self.transport = None
        self.buffer = bytearray()
        self.busy = False             # a request is in progress (its body or its response)
        self.body_done = True
        self.body_length = 0          # bytes of the body still to come (Content-Length)
        self.body_chunks: Optional[Chunked] = None
        self.upstream: Optional[Upstream] = None
        self.pending: Optional[List[bytes]] = None  # body bytes that came before the upstream connection
        self.pending_size = 0
        self.discard = False          # the body goes nowhere: the answer came from here or upstream is gone
        self.response_finished = True
        self.keep_alive = True
        self.http11 = True
        self.closed = False
        self.paused = 0               # bitmask of why the client is not read: 1 upstream full, 2 waiting
        self.last_active = time.monotonic()
        self.name = None
        self.held = None              # a request waiting for its (small) body before going upstream
        self.api_request = None       # (target, headers) of the request in progress when it goes to the API
        self.follow = None            # the log follow this connection's response is (kaos_backend.front_follow)
        self.full = False             # the client does not read as fast as the answer comes

    # -- the client's side
    def connection_made(self, transport):
        self.transport = transport
        self.front.clients.add(self)
        try:
            transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):
            pass
        transport.set_write_buffer_limits(HIGH_WATER)

    def connection_lost(self, exc):
        self.closed = True
        self.front.clients.discard(self)
        if self.follow is not None:
            self.follow.cancel()
            self.follow = None
        if self.upstream is not None and not self.upstream.done:
            self.upstream.done = True
            if self.upstream.transport is not None:
                self.upstream.transport.abort()
        self.upstream = None

    def pause_writing(self):
        self.full = True
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.pause_reading()

    def resume_writing(self):
        self.full = False
        if self.upstream is not None and self.upstream.transport is not None and not self.upstream.done:
            self.upstream.transport.resume_reading()

    def eof_received(self):
        if self.follow is not None:  # a follower that hangs up is gone (nginx ends the request too)
            self.follow.cancel()
            self.follow = None
            return False
        if not self.busy and not self.buffer:
            return False
        if not self.body_done:  # the body will never be complete: nothing to answer
            return False
        self.keep_alive = False
        return True  # half-closed: the answer to the request in progress still goes out

    def data_received(self, data):
        if not self.body_done:
            self._body(data)
            return
        self.buffer += data
        if not self.busy:
            self._next_request()
        elif len(self.buffer) > MAX_HEAD:
            self._pause(2)

    def write(self, data) -> None:
        if not self.closed:
            self.transport.write(data)

    def abort(self) -> None:
        self.closed = True
        self.transport.abort()

    def _pause(self, reason: int) -> None:
        if not self.paused:
            self.transport.pause_reading()
        self.paused |= reason

    def _resume(self, reason: int) -> None:
        if self.paused & reason:
            self.paused &= ~reason
            if not self.paused and not self.closed:
                self.transport.resume_reading()

    def upstream_full(self, full: bool) -> None:
        if full:
            self._pause(1)
        else:
            self._resume(1)

    # -- requests
    def _next_request(self) -> None:
        buffer = self.buffer
        end = buffer.find(b"\r\n\r\n")
        if end >= 0:
            head_end, body_start = end, end + 4
        else:
            match = _HEAD_END.search(buffer)
            if match is None:
                if len(buffer) > MAX_HEAD:
                    self._refuse(431, "Request Header Fields Too Large", "Request headers are too large")
                return
            head_end, body_start = match.start(), match.end()
        if head_end == 0:  # blank lines between requests are allowed (RFC 9112 2.2)
            del buffer[:body_start - (2 if buffer.startswith(b"\r\n\r\n") else 1)]
            while buffer[:2] == b"\r\n" or buffer[:1] == b"\n":
                del buffer[:2 if buffer[:2] == b"\r\n" else 1]
            if buffer:
                self._next_request()
            return
        self.busy = True
        self.last_active = time.monotonic()
        try:
            start, headers = _parse_head(bytes(buffer[:head_end]))
            if len(start) != 3 or not start[2].startswith(b"HTTP/1."):
                raise ProtocolError("bad request line")
            length, chunked, connection = _framing(headers)
        except ProtocolError as error:
            self._refuse(400, "Bad Request", f"Bad request: {error}")
            return
        del buffer[:body_start]
        method, target, version = start
        self.http11 = version == b"HTTP/1.1"
        self.keep_alive = (b"close" not in connection) if self.http11 else (b"keep-alive" in connection)
        self.body_chunks = Chunked() if chunked else None
        self.body_length = 0 if chunked else (length or 0)
        self.body_done = not chunked and not length
        self.response_finished = False
        self.discard = False
        self.pending, self.pending_size = [], 0
        self.upstream = None
        self.name = None
        self.held = (method, target, version, headers, chunked, length)
        # A small body is on its way right behind the head (http.client sends them apart): waiting for it
        # lets head and body go upstream in one send, one segment, one read by the endpoint.
        hold = (not self.body_done and not chunked and length <= HOLD_BODY
                and not any(header[0] == b"expect" for header in headers))
        rest = bytes(buffer)
        buffer.clear()
        if not hold:
            self._route()
        if rest:
            if self.body_done:
                buffer += rest
                if not self.busy and not self.closed:  # answered at once: on to the next request
                    self._next_request()
            else:
                self._body(rest)

    def _route(self) -> None:
        method, target, version, headers, chunked, length = self.held
        self.held = None
        self.api_request = None
        if target.startswith(SERVE_PREFIX):
            self._to_endpoint(method, target, headers, chunked, length)
            return
        self.api_request = (target, headers)
        answer = self._api_down_answer()
        if answer is not None:  # /api/health while the API is not up: answered here
            self._answer(answer)
        else:
            self._to_api(method, target, version, headers)

    def _api_down_answer(self) -> Optional[bytes]:
        api_down, request = self.front.api_down, self.api_request
        return api_down(*request) if api_down is not None and request is not None else None

    def _body(self, data) -> None:
        """Bytes of the request body in progress: to the upstream (or queued for it, or dropped)."""
        if self.body_chunks is not None:
            try:
                end = self.body_chunks.feed(data)
            except ProtocolError:
                self.abort()
                return
        else:
            end = self.body_length if len(data) >= self.body_length else -1
            self.body_length -= len(data) if end < 0 else end
        if end >= 0:
            body, rest = (data[:end], data[end:]) if end < len(data) else (data, b"")
            self.body_done = True
        else:
            body, rest = data, b""
        if body and not self.discard:
            if self.pending is None:  # the head went out: the body follows it directly
                upstream = self.upstream
                if upstream is not None and not upstream.done:
                    upstream.transport.write(body)
            else:
                self.pending.append(bytes(body))
                self.pending_size += len(body)
                if self.pending_size > HIGH_WATER:
                    self._pause(1)
        if rest:
            self.buffer += rest
        if self.body_done:
            if self.held is not None:
                self._route()
            elif self.response_finished:
                self._finish()

    def _to_api(self, method, target, version, headers) -> None:
        out = [method + b" " + target + b" " + version]
        for name, _, line in headers:
            if (name not in HOP_BY_HOP or name == b"transfer-encoding") and name != log_handoff.HEADER_NAME:
                out.append(line)
        out.append(b"Connection: close")
        self._connect(method, b"\r\n".join(out) + b"\r\n\r\n", self.front.api_address, None)

    def _to_endpoint(self, method, target, headers, chunked, length) -> None:
        path, question, query = target.partition(b"?")
        name, _, rest = path[1:].partition(b"/")
        forwarded = b"/" + rest + question + query
        try:
            name = name.decode("ascii")
        except UnicodeDecodeError:
            name = "serve-?"
        self.name = name
        out = [method + b" " + forwarded + b" HTTP/1.1"]
        for header, _, line in headers:
            # X-Token is the platform's secret: never handed to an endpoint's (the user's) code. Authorization
            # and Cookie pass: they are between the client and its own endpoint.
            if header not in HOP_BY_HOP and header not in (b"host", b"x-token", log_handoff.HEADER_NAME):
                out.append(line)
        if chunked:
            out.append(b"Transfer-Encoding: chunked")
        out.append(b"Connection: close")
        endpoints = self.front.endpoints
        address = endpoints.cached(name)
        if address is _UNKNOWN:
            self.loop.create_task(self._lookup_then_connect(name, method, out))
        else:
            self._endpoint_address(name, method, out, address)

    async def _lookup_then_connect(self, name, method, out) -> None:
        try:
            address = await self.front.endpoints.get(name)
        except Exception as error:  # noqa: BLE001 - the database is down: an answer, not a dead connection
            self.front.log(f"endpoint lookup of {name} failed: {error!r}")
            self._answer(json_response(503, "Service Unavailable", "ENDPOINT_UNAVAILABLE",
                                       f"Endpoint {name} cannot be looked up: see the backend log"))
            return
        if not self.closed:
            self._endpoint_address(name, method, out, address)

    def _endpoint_address(self, name, method, out, address) -> None:
        if address is None:
            self._answer(json_response(404, "Not Found", "PIPELINE_NOT_FOUND", f"Pipeline {name} not found"))
            return
        state, host, port = address
        if port is None:
            self._answer(_unavailable(name, state))
            return
        out.insert(1, f"Host: {host}:{port}".encode("latin-1"))
        self._connect(method, b"\r\n".join(out) + b"\r\n\r\n", (host, port), name)

    def _connect(self, method, head: bytes, address, endpoint: Optional[str]) -> None:
        upstream = Upstream(self, method)
        self.upstream = upstream
        sock = _quick_connect(address) if hasattr(self.loop, "_make_socket_transport") else None
        if sock is None:  # not at once: the event loop's way, in a task
            self.loop.create_task(self._open(upstream, head, address, endpoint))
            return
        try:
            # what create_connection() does once connected, without its task, futures and round trips; the
            # transport can be written at once (connection_made follows on the loop's next turn)
            upstream.transport = self.loop._make_socket_transport(sock, upstream)
        except Exception:
            sock.close()
            raise
        upstream.transport.set_write_buffer_limits(HIGH_WATER)
        self._send_head(upstream, head)

    async def _open(self, upstream: Upstream, head: bytes, address, endpoint: Optional[str]) -> None:
        deadline = time.monotonic() + API_START_SECONDS
        while True:
            try:
                if isinstance(address, str):
                    await self.loop.create_unix_connection(lambda: upstream, address)
                else:
                    await self.loop.create_connection(lambda: upstream, address[0], address[1])
                break
            except (FileNotFoundError, ConnectionRefusedError):
                # the API server is starting (or restarting its workers): wait for it a little; health does
                # not wait, it says so (the API died after the request was routed to it)
                answer = self._api_down_answer() if endpoint is None else None
                if answer is not None and upstream is self.upstream and not self.closed:
                    self.upstream = None
                    self._answer(answer)
                    return
                if endpoint is None and time.monotonic() < deadline and not self.closed:
                    await asyncio.sleep(0.05)
                    continue
                error = sys.exc_info()[1]
            except OSError as exc:
                error = exc
            if upstream is not self.upstream or self.closed:
                return
            self.upstream = None
            if endpoint is None:
                self._answer(json_response(503, "Service Unavailable", "PLATFORM_UNHEALTHY",
                                           "The kaos backend's api is not answering"))
            elif isinstance(error, ConnectionRefusedError):
                await self._refused(endpoint)
            else:
                self._answer(_endpoint_error(endpoint, type(error).__name__))
            return
        if upstream is not self.upstream or self.closed:
            upstream.done = True
            upstream.transport.abort()
            return
        try:
            upstream.transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):
            pass
        self._send_head(upstream, head)

    def _send_head(self, upstream: Upstream, head: bytes) -> None:
        """The request head, then the body bytes that came while connecting; from now on the body streams."""
        pending = self.pending
        self.pending, self.pending_size = None, 0
        if self.full:
            upstream.transport.pause_reading()
        upstream.transport.write(head + b"".join(pending) if pending else head)
        if self.paused & 1 and upstream.transport.get_write_buffer_size() <= HIGH_WATER:
            self._resume(1)

    async def _refused(self, name: str) -> None:
        """The endpoint refused the connection: killed a moment ago (404) or not accepting connections (503)."""
        endpoints = self.front.endpoints
        endpoints.forget(name)
        try:
            address = await endpoints.get(name)
        except Exception:  # noqa: BLE001
            address = ("PIPELINE_UNKNOWN", None, None)
        if address is None:
            self._answer(json_response(404, "Not Found", "PIPELINE_NOT_FOUND", f"Pipeline {name} not found"))
        else:
            self._answer(_unavailable(name, address[0]))

    def upstream_broke(self, reason: str, answered: bool) -> None:
        """The upstream connection ended (or spoke nonsense) before a response head."""
        self.upstream = None
        if self.name is not None:
            self.loop.create_task(self._broke(self.name, reason))
        else:
            self._answer(self._api_down_answer() or json_response(
                502, "Bad Gateway", "INTERNAL_ERROR", "The kaos API server broke off the request: see the backend log"))

    async def _broke(self, name: str, reason: str) -> None:
        """The endpoint broke off a request: 502 with its state now (it may have crashed: its reason then)."""
        endpoints = self.front.endpoints
        endpoints.forget(name)
        try:
            address = await endpoints.get(name)
        except Exception:  # noqa: BLE001 - the database is down: the 502 still goes out
            address = None
        state = address[0] if address else "PIPELINE_UNKNOWN"
        self._answer(_endpoint_error(name, reason, state))

    def _answer(self, response: bytes) -> None:
        """An answer from here: the request's body (if any is still coming) is read and dropped."""
        if self.closed:
            return
        self.discard = True
        self.pending = None
        self._resume(1)
        self.write(response)
        self.response_finished = True
        if self.body_done:
            self._finish()

    def hand_off(self, value: bytes, head: bytes) -> None:
        """The API handed this request's log follow over (its `X-Kaos-Follow` value): stream it from here."""
        self.upstream = None
        if self.closed:
            return
        try:
            follow = self.front.follows.start(value, self, self.http11, head)
        except ValueError as error:
            self.front.log(f"the API handed off a log follow that cannot be followed: {error}")
            self._answer(json_response(502, "Bad Gateway", "INTERNAL_ERROR",
                                       "The kaos API server broke off the request: see the backend log"))
            return
        if not follow.closed:
            self.follow = follow

    def backlog(self) -> int:
        """Bytes queued for the client (a log follow reads on below a bound)."""
        return 0 if self.closed else self.transport.get_write_buffer_size()

    def follow_done(self) -> None:
        self.follow = None
        self.response_finished = True
        if not self.body_done:
            self.discard = True
            self._resume(1)
            return
        self._finish()

    def response_done(self, upstream: Upstream) -> None:
        if upstream is not self.upstream:
            return
        self.upstream = None
        self.response_finished = True
        if not self.body_done:
            self.discard = True  # answered before the whole body came (413 and the like): the rest is dropped
            self._resume(1)
            return
        self._finish()

    def _finish(self) -> None:
        """Request and response both complete: next request, or close."""
        self.busy = False
        self.upstream = None
        self.last_active = time.monotonic()
        if self.closed:
            return
        if not self.keep_alive:
            self.closed = True
            self.transport.close()
            return
        self._resume(2)
        if self.buffer:
            self._next_request()

    def _refuse(self, status: int, reason: str, message: str) -> None:
        """A request that cannot be parsed: the answer, then the connection is closed."""
        self.keep_alive = False
        self.write(json_response(status, reason, "BAD_REQUEST", message, close=True))
        self.closed = True
        self.transport.close()


def _quick_connect(address) -> Optional[socket.socket]:
    """A connected non-blocking socket when the connection is made within a few milliseconds (a local server
    accepts at once: this spares the event loop's round trips), else None and the caller connects the slow way."""
    if isinstance(address, str):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    elif ":" in address[0]:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    elif address[0].replace(".", "").isdigit():
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    else:
        return None
    try:
        sock.settimeout(QUICK_CONNECT_SECONDS)
        sock.connect(address)
        sock.setblocking(False)
        if sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    except OSError:
        sock.close()
        return None


def _unavailable(name: str, state: str) -> bytes:
    return json_response(503, "Service Unavailable", "ENDPOINT_UNAVAILABLE",
                         f"Endpoint {name} is not accepting connections ({state}): see kaos serve logs -e {name}")


def _endpoint_error(name: str, reason: str, state: Optional[str] = None) -> bytes:
    now = f"; it is now {state}" if state else ""
    return json_response(502, "Bad Gateway", "ENDPOINT_ERROR",
                         f"Endpoint {name} broke off the request ({reason}{now}): see kaos serve logs -e {name}")


class Front:
    """The listening socket's server: `api_address` is gunicorn's (a unix socket path or (host, port))."""

    def __init__(self, loop, api_address, lookup: Callable[[str], Optional[Address]]):
        self.loop = loop
        self.api_address = api_address
        self.endpoints = Endpoints(lookup, loop)
        self.clients = set()
        self.follows: Optional[Follows] = None  # log follows handed off by the API; None: not honoured
        # (target, headers) -> the answer to a request for the API while the API is not up, or None to relay it
        self.api_down: Optional[Callable[[bytes, list], Optional[bytes]]] = None

    def protocol(self) -> Client:
        return Client(self)

    def log(self, message: str) -> None:
        print(f"[{time.strftime('%Y-%m-%d %H:%M:%S %z')}] [{os.getpid()}] [WARNING] kaos_backend.front: {message}",
              file=sys.stdout, flush=True)

    def sweep(self) -> None:
        """Close client connections idle between requests for longer than KEEPALIVE_SECONDS."""
        limit = time.monotonic() - KEEPALIVE_SECONDS
        for client in list(self.clients):
            if not client.busy and client.last_active < limit and not client.closed:
                client.closed = True
                client.transport.close()
        self.loop.call_later(KEEPALIVE_SECONDS / 4, self.sweep)

    async def serve(self, sock: socket.socket, ready: Optional[Callable[[], None]] = None) -> None:
        server = await self.loop.create_server(self.protocol, sock=sock, backlog=1024)
        if ready is not None:
            ready()
        self.loop.call_later(KEEPALIVE_SECONDS / 4, self.sweep)
        async with server:
            await server.serve_forever()


def endpoint_lookup(database_url: str) -> Callable[[str], Optional[Address]]:
    """`lookup(name)` over SQL, read-only: (state, host, port) of a live endpoint, port None while it does not
    run, None for an unknown or killed one. Plain SELECTs, outside the backend's write-locking transactions."""
    from sqlalchemy import create_engine, select
    from sqlalchemy.engine import make_url

    from kaos_backend.models import Endpoint

    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        engine = create_engine(url, future=True, connect_args={"timeout": 30})
    else:
        engine = create_engine(url, future=True, pool_pre_ping=True)
    query = select(Endpoint.state, Endpoint.desired, Endpoint.port, Endpoint.reason)

    def lookup(name: str) -> Optional[Address]:
        with engine.connect() as connection:
            row = connection.execute(query.where(Endpoint.name == name)).first()
        if row is None or row.desired == "kill":
            return None
        running = row.state == "PIPELINE_RUNNING" and row.port
        state = f"{row.state}: {row.reason}" if row.reason and not running else row.state
        return state, "127.0.0.1", row.port if running else None
    return lookup


def _exit_with_parent() -> None:
    """The front door lives as long as `kaos-backend serve`: a SIGTERM when its parent dies (Linux)."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def api_health(run_dir: str, token: Optional[str]) -> Callable[[bytes, list], Optional[bytes]]:
    """`api_down(target, headers)` for `Front`: while the supervisor's status file (in its runtime directory
    `run_dir`, kaos_backend.part_status) says the API is not up, a request for /api/health is answered here,
    503 PLATFORM_UNHEALTHY naming the API (401 without the right X-Token, as the API would); every other
    request is relayed (and waits a little for the API)."""
    import hmac
    from pathlib import Path

    from kaos_backend import __version__
    from kaos_backend.part_status import describe, evaluate

    executor = os.environ.get("KAOS_EXECUTOR", "").strip().lower() or "local"
    run_dir = Path(run_dir)
    expected = (token or "").encode("utf-8", "surrogateescape")

    def api_down(target: bytes, headers) -> Optional[bytes]:
        if target.split(b"?", 1)[0].rstrip(b"/") != b"/api/health":
            return None
        verdict = evaluate(run_dir)
        api = verdict.parts.get("api") or {"state": "down"}
        if api.get("state") == "up":
            return None
        given = next((value for name, value, _ in headers if name == b"x-token"), None)
        if given is None or not expected or not hmac.compare_digest(given, expected):
            message = "Authorization header not present in the request" if given is None else "Unauthorized Token"
            return json_response(401, "Unauthorized", "AUTHORIZATION_FAILURE", message)
        body = json.dumps({"error_code": "PLATFORM_UNHEALTHY", "message": describe("api", api), "part": "api",
                           "status": "degraded", "version": __version__, "executor": executor,
                           "parts": verdict.parts}).encode()
        return (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1") + body
    return api_down


def main(argv=None) -> int:
    import argparse
    parser = argparse.ArgumentParser(prog="python -m kaos_backend.front",
                                     description="The kaos backend's front door (started by kaos-backend serve). "
                                                 "The database URL is KAOS_DATABASE_URL, the token KAOS_TOKEN.")
    parser.add_argument("--fd", type=int, required=True, help="the listening socket, inherited")
    parser.add_argument("--api", required=True, help="the API server's unix socket")
    parser.add_argument("--parent", type=int, default=None, help="exit when this process is gone")
    parser.add_argument("--run-dir", help="the supervisor's runtime directory: /api/health is answered here "
                                          "while the parts' status there says the API is not up")
    parser.add_argument("--ready-fd", type=int, help="a pipe to write one byte to once serving, then close")
    args = parser.parse_args(argv)
    database_url = os.environ.get("KAOS_DATABASE_URL", "").strip()
    if not database_url:
        parser.error("KAOS_DATABASE_URL is not set")
    _exit_with_parent()
    parent = os.getppid() if args.parent is None else args.parent
    sock = socket.socket(fileno=args.fd)
    sock.setblocking(False)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    front = Front(loop, args.api, endpoint_lookup(database_url))
    front.follows = Follows(loop, finished_query(database_url), front.log)
    if args.run_dir:
        front.api_down = api_health(args.run_dir, os.environ.get("KAOS_TOKEN"))

    def ready():
        if args.ready_fd is not None:
            try:
                os.write(args.ready_fd, b"1")
                os.close(args.ready_fd)
            except OSError:
                pass
    serving = loop.create_task(front.serve(sock, ready))
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(signum, serving.cancel)

    def watch_parent():
        if os.getppid() != parent:
            serving.cancel()  # the parent is gone and the death signal did not come (not Linux)
        else:
            loop.call_later(1.0, watch_parent)
    watch_parent()
    try:
        loop.run_until_complete(serving)
    except asyncio.CancelledError:
        pass
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
