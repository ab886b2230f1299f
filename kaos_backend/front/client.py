"""One client connection, as a state machine:

    HEAD ──head──▶ BODY ──message complete──▶ WAIT (upstream: connect, send, relay) ──▶ HEAD (keep-alive) or closed
      │              │                          └──101──▶ TUNNEL (tunnel.py)
      └──refused─────┴──▶ LINGER: the error answer out, FIN sent, the rest read and dropped, then closed

A request is read whole (its body buffered, body.py) before it goes upstream; a request pipelined behind one in
progress is parsed and waits its turn; bytes behind that are held raw (reading pauses past a limit). The client
is read all along, so a client that leaves (EOF or reset) is noticed at once and its upstream dropped with it.
One deadline per connection (`arm`), checked by the server's tick: the head (408), idle keep-alive (closed),
between body reads (408), and the upstream's connect/read timers, or the send timeout while the client does not
read its response.
"""
import asyncio
import collections
import hmac
import time
from typing import Callable, Optional

from kaos_backend.front import answers, routing, tunnel
from kaos_backend.front.body import Body
from kaos_backend.front.endpoints import UNKNOWN
from kaos_backend.front.heads import HttpError, end_to_end, request_head
from kaos_backend.front.parsing import Request, RequestReader
from kaos_backend.front.upstream import Upstream, tune

HEAD, BODY, WAIT, TUNNEL, LINGER, CLOSED = "head", "body", "wait", "tunnel", "linger", "closed"
MAX_BACKLOG = 64 * 1024     # raw bytes held behind a waiting pipelined request before reading pauses
MAX_QUEUED = 32             # complete pipelined requests waiting behind the active one before the rest is held raw
PARSE_SLICE = 4096          # bytes parsed at a time while requests wait (so that MAX_QUEUED is noticed)
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class Client(asyncio.Protocol):
    __slots__ = ("front", "config", "loop", "transport", "reader", "state", "queue", "active", "upstream", "backlog",
                 "upgrade_bytes", "keep_alive", "write_paused", "read_paused", "refusal", "deadline", "on_deadline",
                 "starting", "start_again", "body_read_at", "__weakref__")

    def __init__(self, front):
        self.front = front
        self.config = front.config
        self.loop = front.loop
        self.transport: Optional[asyncio.Transport] = None
        self.reader = RequestReader(self.config, self)
        self.state = HEAD
        self.queue = collections.deque()      # complete requests waiting behind the active one
        self.active: Optional[Request] = None
        self.upstream: Optional[Upstream] = None
        self.backlog = bytearray()
        self.upgrade_bytes = b""              # bytes after an upgrade request's head, for the tunnel
        self.keep_alive = True
        self.write_paused = False
        self.read_paused = False
        self.refusal: Optional[HttpError] = None  # a bad request behind ones in progress: answered after them
        self.deadline: Optional[float] = None
        self.on_deadline: Optional[Callable[[], None]] = None
        self.body_read_at = 0.0               # when a request body was last read from (monotonic)
        self.starting = False                 # _start_next is on the stack: a nested call only asks for more
        self.start_again = False

    # -- timers
    def arm(self, seconds: float, callback: Callable[[], None]) -> None:
        self.deadline, self.on_deadline = time.monotonic() + seconds, callback

    def disarm(self) -> None:
        self.deadline = self.on_deadline = None

    def expire(self, now: float) -> None:
        """Called by the server's tick: run the deadline's action if it has passed."""
        if self.deadline is not None and now >= self.deadline:
            callback = self.on_deadline
            self.disarm()
            callback()

    def waiting(self) -> bool:
        """Between requests: nothing in progress, held or being read (a connection that may be closed to make
        room at the connection cap)."""
        return (self.state == HEAD and self.active is None and not self.queue and not self.backlog
                and self.reader.request is None and self.refusal is None)

    def _idle(self) -> None:
        self.arm(self.config.keepalive_timeout, self.close)

    # -- the transport's callbacks
    def connection_made(self, transport):
        self.transport = transport
        tune(transport)
        if not self.front.admit(self):
            self.refuse(HttpError(503, "TOO_MANY_CONNECTIONS", "The kaos backend has too many open connections"))
            return
        self.arm(self.config.client_header_timeout, self._head_timeout)

    def connection_lost(self, exc):
        self.state = CLOSED
        self.disarm()
        self.front.forget(self)
        if self.upstream is not None:
            self.upstream.abort()
            self.upstream = None
        for request in (self.active, self.reader.request, *self.queue):
            if request is not None and request.body is not None:
                request.body.close()
        self.queue.clear()
        self.backlog = bytearray()

    def eof_received(self):
        return False  # the client left (nginx: client closed connection): drop everything at once

    def pause_writing(self):
        self.write_paused = True
        if self.upstream is not None:
            self.upstream.pause_reading()
        self.arm(self.config.send_timeout, self.abort)

    def resume_writing(self):
        self.write_paused = False
        if self.upstream is not None:
            self.upstream.resume_reading()
        elif self.state == LINGER:
            self.arm(self.config.lingering_timeout, self.close)

    def data_received(self, data):
        if self.state == LINGER:
            self.arm(self.config.lingering_timeout, self.close)
            return
        if self.state == CLOSED or self.refusal is not None:
            return
        if self.backlog or self.queue or (self.active is not None and self.active.upgrade):
            self._hold(data)
            return
        self._feed(data)

    # -- requests in
    def _hold(self, data) -> None:
        self.backlog += data
        if len(self.backlog) > MAX_BACKLOG and not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def _feed(self, data) -> None:
        """Parse what the client sent, PARSE_SLICE bytes at a time (the rest of a body with nothing waiting goes at
        once) and, once MAX_QUEUED complete requests wait, the rest is held raw (bounded by MAX_BACKLOG, then reading
        pauses): one read of small pipelined requests cannot make thousands of parsed requests wait in memory.
        An Upgrade the front does not honour is followed by the next request (looped, not recursed)."""
        start, end = 0, len(data)
        reader = self.reader
        while start < end:
            if self.active is None and not self.queue and reader.request is not None and not reader.in_head:
                stop = end                      # inside a body, nothing waiting: all at once (an upload's reads)
            elif len(self.queue) >= MAX_QUEUED:
                self._hold(data[start:])
                return
            else:
                stop = min(end, start + PARSE_SLICE)
            piece = data if start == 0 and stop == end else memoryview(data)[start:stop]
            try:
                upgraded = reader.feed(piece)
            except HttpError as error:
                if self.active is not None:  # the requests before it are answered first, in order
                    self.refusal = error
                else:
                    self.refuse(error)
                return
            if self.state == LINGER or self.state == CLOSED:
                return
            if upgraded is None:
                start = stop
                continue
            start += upgraded
            last = self.active if not self.queue else self.queue[-1]
            if last is not None and last.upgrade:
                self.upgrade_bytes = bytes(data[start:])  # the tunnel's first bytes (the request is on its way)
                return
        if reader.in_head and self.state == HEAD and self.on_deadline != self._head_timeout:
            self.arm(self.config.client_header_timeout, self._head_timeout)
        elif self.state == BODY:
            self._arm_body()

    def request_head(self, request: Request) -> Optional[Body]:
        """The parser has a request's head: route it, check it; the Body to fill, if it has one."""
        if request.method == b"CONNECT":
            raise HttpError(405, "METHOD_NOT_ALLOWED", "CONNECT is not served here")
        request.route = route = routing.route(request, self.front.api_max_body, self.config.serve_max_body_bytes)
        has_body = bool(request.length) or request.chunked
        if request.upgrade and (has_body or not route.upgrade):
            if has_body:
                raise HttpError(400, "BAD_REQUEST", "Bad request: an Upgrade request with a body")
            request.upgrade = False  # not a WebSocket to a workload: an ordinary request
        if not has_body:
            return None
        if route.name is None and self.front.token is not None:
            self._check_token(request)
        limit = route.max_body
        message = (self.front.api_limit_message if route.name is None else
                   f"The request body is larger than the limit of {limit // (1024 * 1024)} MB")
        if request.length is not None and request.length > limit:
            raise HttpError(413, "PAYLOAD_TOO_LARGE", message)
        body = Body(limit, self.config.body_memory_bytes, message)
        request.expects_continue = (request.version == "1.1"
                                    and (request.header(b"expect") or b"").lower() == b"100-continue")
        if self.active is None and not self.queue:
            self.state = BODY
            self._arm_body(body)
            self._continue(request)
        return body

    def _check_token(self, request: Request) -> None:
        """An API request with a body must carry the token before the body is read: the API's 401, earlier."""
        given = request.header(b"x-token")
        if given is None:
            raise HttpError(401, "AUTHORIZATION_FAILURE", "Authorization header not present in the request")
        if not hmac.compare_digest(given, self.front.token):
            raise HttpError(401, "AUTHORIZATION_FAILURE", "Unauthorized Token")

    def _continue(self, request: Request) -> None:
        """The 100 Continue a request asked for, once its body is the one being read (not while it waits its
        turn behind pipelined requests: its body would then come before the front reads it)."""
        if request.expects_continue:
            request.expects_continue = False
            self.transport.write(CONTINUE)

    def request_done(self, request: Request) -> None:
        self.queue.append(request)
        if self.active is None:
            self._start_next()

    def _start_next(self) -> None:
        """Start the next queued request. A request the front answers itself finishes inside `_next`, which asks
        for the next one: that is looped here, not recursed (thousands of pipelined 404s overflowed the stack
        and left the connection hung)."""
        if self.starting:
            self.start_again = True
            return
        self.starting = True
        try:
            self.start_again = True
            while self.start_again and self.queue and self.state != CLOSED:
                self.start_again = False
                self._next()
        finally:
            self.starting = False

    def _next(self) -> None:
        request = self.queue.popleft()
        self.active = request
        self.state = WAIT
        self.disarm()
        self.keep_alive = request.keep_alive and not request.upgrade
        route = request.route
        if route.name is None:
            answer = self.api_down_answer(request)
            if answer is not None:
                self.answer_for(None, answer)
                return
            headers = end_to_end(request.headers, drop=(b"expect", *routing.API_HANDOFFS))
            self._upstream(request, self.front.api_address, headers, [])
            return
        address = self.front.endpoints.cached(route.name)
        if address is UNKNOWN:  # a lookup (a query in a thread): in a task of its own
            self.loop.create_task(self._to_workload(request))
        else:                   # known: on at once, no task (it showed in the front's profile)
            self._to_address(request, address)

    async def _to_workload(self, request: Request) -> None:
        name = request.route.name
        try:
            address = await self.front.endpoints.get(name)
        except Exception as error:  # noqa: BLE001 - the database is down: an answer, not a dead connection
            self.front.log(f"endpoint lookup of {name} failed: {error!r}")
            return self.answer_for(None, answers.lookup_failed(name), request)
        if self.active is not request or self.state == CLOSED:
            return None
        return self._to_address(request, address)

    def _to_address(self, request: Request, address) -> None:
        name = request.route.name
        if address is None:
            return self.answer_for(None, answers.not_found(name), request)
        state, host, port = address[:3]
        if port is None:
            return self.answer_for(None, answers.unavailable(name, state), request)
        # X-Token is the platform's secret: never handed to an endpoint's (the user's) code
        headers = end_to_end(request.headers, drop=(b"host", b"x-token", b"expect", *routing.API_HANDOFFS))
        unix = address[3] if len(address) > 3 else None  # its unix socket: no TCP connect and close per request
        self._upstream(request, unix or (host, port), headers, [b"Host: %s:%d" % (host.encode(), port)],
                       self.front.pool)
        return None

    def _upstream(self, request: Request, address, headers, extra, pool=None) -> None:
        """Send the request upstream: its body is whole by now (Expect: 100-continue was the front's to answer).
        With `pool` (a workload's requests) the connection is kept alive for the next request; the API's
        connections are not (each closes after its response)."""
        if request.upgrade:
            upgrade = request.header(b"upgrade") or b"websocket"
            extra += [b"Connection: Upgrade", b"Upgrade: " + upgrade]
        else:
            size = request.body.size if request.body is not None else 0
            if size or request.method in (b"POST", b"PUT", b"PATCH"):
                extra.append(b"Content-Length: %d" % size)
            if pool is None:
                extra.append(b"Connection: close")
        head = request_head(request.method, request.route.target, headers, extra)
        self.upstream = Upstream(self, request, address, head, None if request.upgrade else pool)
        self.upstream.start()

    # -- answers out
    def send(self, data) -> None:
        if self.state != CLOSED:
            self.transport.write(data)

    def api_down_answer(self, request: Request) -> Optional[bytes]:
        api_down = self.front.api_down
        return api_down(request.target, request.headers) if api_down is not None else None

    def answer_for(self, upstream: Optional[Upstream], answer: bytes, request: Optional[Request] = None) -> None:
        """An answer from the front for the active request (if `upstream`/`request` is still the current one)."""
        if self.state == CLOSED or (upstream is not None and upstream is not self.upstream) or (
                request is not None and request is not self.active):
            return
        self.send(answer)
        self.response_finished()

    def response_finished(self) -> None:
        """The active request's response is out: the next request, or close."""
        request, self.active, self.upstream = self.active, None, None
        if request is not None and request.body is not None:
            request.body.close()
        if self.state == CLOSED:
            return
        if not self.keep_alive:
            self.close()
            return
        self.state = HEAD
        if self.queue:
            self._start_next()
            return
        if self.refusal is not None:
            self.refuse(self.refusal)
            return
        if self.reader.in_head:  # a pipelined request being read: its head or its body goes on
            self.arm(self.config.client_header_timeout, self._head_timeout)
        elif self.reader.request is not None:
            self.state = BODY
            self._arm_body()
            self._continue(self.reader.request)
        else:
            self._idle()
        if self.backlog:
            data, self.backlog = bytes(self.backlog), bytearray()
            if self.read_paused:
                self.read_paused = False
                self.transport.resume_reading()
            self._feed(data)

    def tunnel(self, upstream_transport: asyncio.Transport, upstream_bytes: bytes) -> None:
        """The upstream answered 101: from now on bytes pass both ways untouched (tunnel.py)."""
        self.state = TUNNEL
        self.disarm()
        self.upstream = None
        first = self.upgrade_bytes + bytes(self.backlog)
        self.upgrade_bytes, self.backlog = b"", bytearray()
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        tunnel.join(self, self.transport, upstream_transport, first, upstream_bytes)

    def refuse(self, error: HttpError) -> None:
        """A request the front answers itself and then closes: the answer, a FIN, and the rest of what the client
        sends is read and dropped for a moment (a close with unread bytes would reset the connection and could
        destroy the answer on its way)."""
        if self.state in (LINGER, CLOSED):
            return
        if self.upstream is not None:
            self.upstream.abort()
            self.upstream = None
        self.state = LINGER
        self.transport.write(error.response())
        if self.transport.can_write_eof():
            self.transport.write_eof()
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        self.arm(self.config.lingering_timeout, self.close)

    def close(self) -> None:
        if self.state != CLOSED:
            self.state = CLOSED
            self.disarm()
            self.transport.close()

    def abort(self) -> None:
        if self.state != CLOSED:
            self.state = CLOSED
            self.disarm()
            self.transport.abort()

    def _head_timeout(self) -> None:
        self.refuse(HttpError(408, "REQUEST_TIMEOUT",
                              f"The request head did not come within {self.config.client_header_timeout:g} s"))

    def _arm_body(self, body: Optional[Body] = None) -> None:
        """While a body is read: `client_body_timeout` between two reads, and in all no longer than that plus one
        second per `client_body_min_rate` bytes received (Apache's mod_reqtimeout MinRate): a body trickled
        steadily, a few bytes before each timeout, is cut too."""
        config = self.config
        self.body_read_at = now = time.monotonic()
        if body is None:
            request = self.reader.request
            body = request.body if request is not None else None
        deadline = now + config.client_body_timeout
        if body is not None:
            allowed = config.client_body_timeout + body.size / config.client_body_min_rate
            deadline = min(deadline, body.started + allowed)
        self.deadline, self.on_deadline = deadline, self._body_timeout

    def _body_timeout(self) -> None:
        config = self.config
        if time.monotonic() - self.body_read_at >= config.client_body_timeout:
            message = f"The request body stalled for {config.client_body_timeout:g} s"
        else:
            message = f"The request body came slower than {config.client_body_min_rate:g} bytes a second"
        self.refuse(HttpError(408, "REQUEST_TIMEOUT", message))

