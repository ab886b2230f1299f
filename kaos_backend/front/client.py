"""One client connection, as a state machine:

    HEAD ──head──▶ BODY ──message complete──▶ WAIT (upstream: connect, send, relay) ──▶ HEAD (keep-alive) or closed
      │              │                          └──101──▶ TUNNEL (tunnel.py)
      └──refused─────┴──▶ LINGER: the error answer out, FIN sent, the rest read and dropped, then closed
      └──express lane: a request head whose body follows──▶ LANE_BODY ──body whole──▶ WAIT, or the general way

A request is read whole (its body buffered, body.py) before it goes upstream; a request pipelined behind one in
progress is parsed and waits its turn; bytes behind that are held raw (reading pauses past a limit). The client
is read all along, so a client that leaves (EOF or reset) is noticed at once and its upstream dropped with it.
One deadline per connection (`arm`), checked by the server's tick: the head (408), idle keep-alive (closed),
between body reads (408), and the upstream's connect/read timers, or the send timeout while the client does not
read its response (writing paused), which holds until the client reads: a response that ends into a full buffer
is not out yet (what follows it waits for `resume_writing`), and a close that waits for a buffer to drain is cut
at the send timeout. Reading requests (parsing, checks, body deadlines) is reading.py's part of the class;
the deadline, refusing and closing are client_lifetime.py's.
"""
import asyncio
import collections
import time
from typing import Callable, Optional

from kaos_backend.front import answers, routing, tunnel
from kaos_backend.front.client_lifetime import ConnectionLifetime
from kaos_backend.front.endpoints import UNKNOWN
from kaos_backend.front.express import Express
from kaos_backend.front.express import eligible as express_eligible
from kaos_backend.front.heads import FORWARDING, HttpError, end_to_end, forwarding, peer_address, request_head
from kaos_backend.front.parsing import Request, RequestReader
from kaos_backend.front.reading import BODY, CLOSED, HEAD, LANE_BODY, LINGER, TUNNEL, WAIT, RequestReading
from kaos_backend.front.upstream import Upstream, tune


class Client(ConnectionLifetime, RequestReading, asyncio.Protocol):
    __slots__ = ("front", "config", "loop", "transport", "reader", "state", "queue", "active", "upstream", "backlog",
                 "upgrade_bytes", "keep_alive", "write_paused", "read_paused", "refusal", "deadline", "on_deadline",
                 "starting", "start_again", "body_read_at", "linger_until", "express", "draining", "forward",
                 "__weakref__")

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
        self.linger_until = 0.0               # the end of lingering after an early answer (monotonic)
        self.starting = False                 # _start_next is on the stack: a nested call only asks for more
        self.start_again = False
        self.express: Optional[Express] = None  # the express lane (express.py), made at its first use
        self.draining = False                 # the active response is whole, writing paused: the rest waits
        self.forward: Optional[bytes] = None  # the forwarding headers of a request with none of its own, made once

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
        """The client reads again: the send timeout is over, and what waited for it goes on (each part re-arms its
        own timer)."""
        self.write_paused = False
        if self.on_deadline == self.abort:  # (the send timeout: pause_writing's)
            self.disarm()
        if self.upstream is not None:
            self.upstream.resume_reading()
        elif self.draining:
            self.response_finished()
        elif self.state == LINGER:
            self._linger()
        elif self.state == BODY:
            self._arm_body()
        elif self.state == CLOSED:
            if self.deadline is not None:  # closing, bytes still unsent: the client takes them, so more time
                self.arm(self.config.send_timeout, self._drop_unsent)
        elif self.state == HEAD:
            if self.reader.in_head:
                self.arm(self.config.client_header_timeout, self._head_timeout)
            else:
                self._idle()

    def data_received(self, data):
        if (self.state == HEAD and self.active is None and self.reader.request is None and not self.backlog
                and not self.queue and self.refusal is None and not self.write_paused and self.config.express):
            lane = self.express
            if lane is None and express_eligible(data):
                lane = self.express = Express(self)
            if lane is not None and lane.relay(data):
                return
        if self.state == LANE_BODY:
            self.express.collect(data)
            return
        if self.state == LINGER:
            self._linger()
            return
        if self.state == CLOSED or self.refusal is not None:
            return
        if self.backlog or self.queue or (self.active is not None and self.active.upgrade):
            self._hold(data)
            return
        self._feed(data)

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
            headers = end_to_end(request.headers, drop=(b"expect", *FORWARDING, *routing.API_HANDOFFS))
            self._upstream(request, self.front.api_address, headers, [self.forwarding(request.headers)])
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

    def reroute(self, upstream: Upstream, request: Request, address) -> None:
        """`upstream` found its endpoint moved (endpoints.Address `address`): the request goes there instead, if
        it is still the one in progress."""
        if self.state != CLOSED and upstream is self.upstream and request is self.active:
            self._to_address(request, address)

    def _to_address(self, request: Request, address) -> None:
        name = request.route.name
        if address is None:
            return self.answer_for(None, answers.not_found(name), request)
        state, host, port = address[:3]
        if port is None:
            return self.answer_for(None, answers.unavailable_at(name, address), request)
        # X-Token is the platform's secret: never handed to an endpoint's (the user's) code. A notebook keeps the
        # client's Host: Jupyter checks a WebSocket's Origin against it
        keeps_host = name.startswith("notebook-")
        headers = end_to_end(request.headers, drop=((b"x-token", b"expect") if keeps_host else
                                                     (b"host", b"x-token", b"expect")) + FORWARDING
                             + tuple(routing.API_HANDOFFS))
        unix = address[3] if len(address) > 3 else None  # its unix socket: no TCP connect and close per request
        forward = self.forwarding(request.headers)
        self._upstream(request, unix or (host, port), headers,
                       [forward] if keeps_host else [b"Host: %s:%d" % (host.encode(), port), forward], self.front.pool)
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

    def forwarding(self, headers, given: bool = True) -> bytes:
        """The forwarding header lines (heads.forwarding) of a request with `headers` from this connection's
        client; `given=False`: the request has no X-Forwarded-For of its own (the lines made once a connection)."""
        forward = self.forward
        if forward is None:
            forward = self.forward = forwarding(peer_address(self.transport))
        if given:
            for header in headers:
                if header[0] == b"x-forwarded-for":
                    return forwarding(peer_address(self.transport), headers)
        return forward

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
        """The active request's response is whole: the next request, or close. While writing is paused (the
        client has not read enough of it) the response stays the active one (requests read meanwhile wait
        behind it, as behind any) and the send timeout stays armed: `resume_writing` calls this again."""
        request, self.upstream = self.active, None
        if request is not None and request.body is not None:
            request.body.close()
        if self.state == CLOSED or not self.keep_alive:
            self.active = None
            self.draining = False
            self.close()
            return
        if self.write_paused:
            self.draining = True
            return
        self.active = None
        self.draining = False
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

    def lane_finished(self) -> None:
        """The express lane's response is out (express.py): `response_finished`, shorter when nothing else waits
        (no request queued, being read, refused or held) and the client reads (writing not paused)."""
        if (self.queue or self.backlog or self.refusal is not None or self.reader.request is not None
                or self.state == CLOSED or self.write_paused):
            self.response_finished()
            return
        self.active = self.upstream = None
        self.state = HEAD
        self.deadline, self.on_deadline = time.monotonic() + self.config.keepalive_timeout, self.close  # (_idle)

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
