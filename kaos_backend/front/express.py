"""The express lane: the common request to a workload relayed with the least work. The general path (reading.py,
client.py, upstream.py) handles every case and costs about three times the CPU of a minimal relay per request;
the lane handles the one case that nearly all predictions are, and hands anything else to the general path.

The lane takes a read only when all of this holds; otherwise the read goes the general way as if the lane did not
exist (the general parser has not seen it):
- the connection is between requests, nothing held, queued or paused, and the read is exactly one whole request:
  HTTP/1.1, kept alive, no Upgrade, Expect or Transfer-Encoding, no Connection token but keep-alive, one Host, a
  `/serve-...` or `/notebook-...` target without `%`, `\\` or `/.` in its path (so routing needs no decoding and
  no dot segment can hide in it), within every bound of config.py (target, head, header count and size, body);
- the workload's address is cached and running (endpoints.py), and the pool holds an idle connection to it.
The request head is rebuilt as the general path rebuilds it (the same headers dropped; Host and Content-Length the
front's) and sent with the body in one write.

The response is read by express_response.ResponseReading. A plain one whole within `head_hold_seconds` of its first
bytes goes out, head and body, in one write; one whose body is late has its head sent alone when the hold runs out
and its body relayed as it comes (as the general path does); then the connection goes back to the pool. Anything
else (a 1xx or 101, a chunked, close-delimited or large body, bytes after the response, a head not whole when the
hold runs out, the read timeout, the server closing, the client reading slowly) hands the exchange to an
upstream.Upstream with every byte read so far: the general path goes on from there as if it had relayed the
request itself (retries, 502/504, streaming with backpressure). tests/front/test_express.py compares the bytes both
paths send, each way, over a corpus.
"""
import time
from typing import List, Optional

import httptools

from kaos_backend.front import routing
from kaos_backend.front.body import Body
from kaos_backend.front.endpoints import UNKNOWN
from kaos_backend.front.express_response import EXPRESS_RESPONSE_BYTES, STOP, ResponseReading
from kaos_backend.front.heads import FRAMING, HOP_BY_HOP, Header
from kaos_backend.front.parsing import Request
from kaos_backend.front.reading import WAIT
from kaos_backend.front.upstream import Upstream

_PREFIXES = tuple(prefix[1:] for prefix in routing.WORKLOAD_PREFIXES)  # b"serve-", b"notebook-"
_DECLINED = frozenset({b"transfer-encoding", b"expect"})  # framing or an interim answer: the general path's


def eligible(data) -> bool:
    """A first cheap look at a read: does it start like a request to a workload (`METHOD /serve-...`)?"""
    space = data.find(b" ", 0, 16)
    return space > 0 and data.startswith(b"/", space + 1) and data.startswith(_PREFIXES, space + 2)


class Express:
    """The express lane of one client connection (client.Client), reused for each of its requests. While a request
    is in flight it is the client's `active` request and its `upstream`, and the target of the pooled connection's
    pool.Link; it offers what the client asks of those (`body`, `upgrade`, `abort`, `pause_reading`...)."""
    __slots__ = ("client", "front", "config", "request_parser", "skip", "small_head", "max_headers", "target",
                 "headers", "lines", "hosts", "payload", "messages", "complete", "method", "response", "raw",
                 "raw_size", "held", "head_sent", "paused", "transport", "link", "key", "head", "last", "read_timeout",
                 "max_body", "on_read_timeout")
    body = None       # as a client's active request: no body.Body to close (the payload is bytes)
    upgrade = False   # ... and no tunnel to open

    def __init__(self, client):
        self.client = client
        self.front = client.front
        config = self.config = client.config
        self.request_parser: Optional[httptools.HttpRequestParser] = None
        # the request headers not forwarded (as client._to_address drops them); hand-off names are registered at
        # the front's start, so by now
        self.skip = HOP_BY_HOP | FRAMING | {b"host", b"x-token", b"expect"} | frozenset(routing.API_HANDOFFS)
        # a head no longer than this is within every size bound (target, one field, the whole head): only a
        # longer one has its sizes counted
        self.small_head = min(config.max_target_bytes, config.max_header_field_bytes - 2, config.max_head_bytes)
        self.max_headers = config.max_headers
        self.max_body = config.serve_max_body_bytes
        self.target = b""
        self.headers: List[Header] = []  # as parsing.Request keeps them, for a hand-over
        self.lines: List[bytes] = []     # the forwarded head's lines, built as the headers come
        self.hosts = 0
        self.payload: List[bytes] = []
        self.messages = 0
        self.complete = False
        self.method = b""
        self.response: Optional[ResponseReading] = None  # a new one after a hand-over (its parser is mid-message)
        self.raw: List[bytes] = []          # the response's bytes as read, for a hand-over
        self.raw_size = 0
        self.held = False                   # the response head waits in the front's HeadHolds
        self.head_sent = False              # the response head went out alone (its body came late)
        self.paused = False                 # reading the connection paused for a slow client
        self.transport = None               # the pooled connection carrying the request in flight
        self.link = None
        self.key = None                     # its pool key: the endpoint's unix socket or (host, port)
        self.head = b""
        self.last = (None, None, b"")       # the last (name, address, Host line): most requests repeat them
        self.read_timeout = config.proxy_read_timeout
        self.on_read_timeout = self._read_timeout

    # -- the request
    def relay(self, data) -> bool:
        """Relay `data` (one read, the connection between requests) if it is one request the lane takes: True
        when sent upstream; False, with nothing changed, for the general path to handle."""
        parser = self.request_parser
        if parser is None:
            parser = self.request_parser = httptools.HttpRequestParser(self)
        self.target = b""
        self.headers = []
        self.lines = [b""]
        self.payload = []
        self.hosts = self.messages = 0
        self.complete = False
        try:
            parser.feed_data(data)
        except httptools.HttpParserError:  # refused, an Upgrade, or stopped by a callback: the general path's
            self.request_parser = None     # (it parses the read again with its own parser)
            return False
        if not self.complete or self.messages != 1:
            self.request_parser = None     # part of a request, or pipelined ones
            return False
        # (one function with what follows: a call less per request, on the front's hottest path)
        method = self.method
        if method == b"HEAD" or method == b"CONNECT" or self.hosts != 1:
            return False
        payload = self.payload[0] if len(self.payload) == 1 else b"".join(self.payload)
        if len(data) - len(payload) > self.small_head and not self._within_bounds():
            return False
        if len(payload) > self.max_body:
            return False
        path, question, query = self.target.partition(b"?")
        if b"%" in path or b"\\" in path or b"/." in path:
            return False
        name, _, rest = path[1:].partition(b"/")
        last_name, address, host_line = self.last
        if name != last_name or self.front.endpoints.cached(name.decode("latin-1")) is not address:
            address = self.front.endpoints.cached(name.decode("latin-1"))
            if address is UNKNOWN or address is None or address[2] is None:
                return False
            host_line = b"Host: %s:%d" % (address[1].encode(), address[2])
            self.last = (name, address, host_line)
        key = address[3] if len(address) > 3 and address[3] else (address[1], address[2])
        transport = self.front.pool.take(key)
        if transport is None:
            return False
        # taken: from here the request is the lane's
        lines = self.lines
        lines[0] = method + b" /" + rest.lstrip(b"/") + question + query + b" HTTP/1.1"
        lines.append(host_line)
        if payload or method == b"POST" or method == b"PUT" or method == b"PATCH":
            lines.append(b"Content-Length: %d" % len(payload))
        lines.append(b"\r\n")
        self.head = head = b"\r\n".join(lines)
        self.payload = [payload]
        self.key = key
        self.transport = transport
        self.link = link = transport.get_protocol()
        link.target = self
        self.raw = []
        self.raw_size = 0
        if self.response is None:
            self.response = ResponseReading(self.max_headers)
        else:
            self.response.reset()
        transport.write(head + payload if payload else head)
        client = self.client
        client.state = WAIT
        client.active = client.upstream = self
        client.keep_alive = True
        client.deadline, client.on_deadline = time.monotonic() + self.read_timeout, self.on_read_timeout  # (arm)
        return True

    def on_message_begin(self):
        self.messages += 1

    def on_url(self, url):
        self.target += url

    def on_header(self, name, value):
        headers = self.headers
        if len(headers) >= self.max_headers:
            raise STOP
        lowered = name.lower()
        headers.append((lowered, name, value))
        if lowered not in self.skip:
            self.lines.append(name + b": " + value)
        elif lowered == b"host":
            self.hosts += 1
        elif lowered in _DECLINED or (lowered == b"connection" and value.lower() != b"keep-alive"):
            raise STOP

    def on_headers_complete(self):
        parser = self.request_parser  # what llhttp knows of the head, asked while it is current (as parsing.py)
        if parser.get_http_version() != "1.1" or not parser.should_keep_alive() or parser.should_upgrade():
            raise STOP
        self.method = parser.get_method()

    def on_body(self, data):
        self.payload.append(data)

    def on_message_complete(self):
        self.complete = True

    def _within_bounds(self) -> bool:
        """The size bounds of a long head, counted as parsing.RequestReader counts them."""
        config = self.config
        if len(self.target) > config.max_target_bytes:
            return False
        size = 0
        for _, name, value in self.headers:
            field = len(name) + len(value)
            if field + 2 > config.max_header_field_bytes:
                return False
            size += field + 4
        return size <= config.max_head_bytes

    # -- the response (the pooled connection's pool.Link calls these)
    def data_received(self, data):
        response = self.response
        try:
            response.parser.feed_data(data)
        except httptools.HttpParserError:
            stopped = True
        else:
            stopped = False
        if self.head_sent:  # the head is out (the hold ran out): the body follows as it comes
            if response.body:
                pieces, response.body = response.body, []
                self.client.transport.write(pieces[0] if len(pieces) == 1 else b"".join(pieces))
            if response.whole:
                self._finish(trusted=not stopped)
            elif stopped:  # not for a body of a known length; as the general path would, cut the client
                self.abort()
                self.client.abort()
            else:
                self.client.arm(self.read_timeout, self.on_read_timeout)
            return
        self.raw.append(data)
        self.raw_size += len(data)
        if stopped:  # (handed over outside the except: the general parser's errors must not chain to this one)
            self._hand_over()
        elif response.whole:  # (the client is open: its leaving would have aborted this exchange)
            body = response.body
            self.client.transport.write(response.head() + (body[0] if len(body) == 1 else b"".join(body)))
            self._finish(trusted=True)
        elif self.raw_size > EXPRESS_RESPONSE_BYTES:
            self._hand_over()
        elif not self.held:
            self.held = True
            self.front.holds.hold(self)

    def hold_expired(self) -> None:
        """The body did not follow its head within the hold: the head goes out alone, as the general path's would,
        and the body follows in the lane; a head not whole yet goes to the general path."""
        self.held = False
        if self.transport is None:
            return
        response = self.response
        if response.length is None:
            self._hand_over()._release_head()  # the general path's own hold has run out too
            return
        pieces, response.body = response.body, []
        self.client.transport.write(response.head() + b"".join(pieces) if pieces else response.head())
        self.head_sent = True
        self.raw = []
        self.client.arm(self.read_timeout, self.on_read_timeout)

    def _finish(self, trusted: bool) -> None:
        """The response is out: the connection back to the pool (or closed, and its server distrusted when it sent
        bytes after the response, as the general path does), then the client's next request."""
        transport, link = self.transport, self.link
        if self.held or self.paused:
            self._forget(keep_reading=True)
        else:  # (what _forget does here, inline: the common end of a response)
            self.response.body = []
            self.raw = []
            self.head_sent = False
        self.transport = self.link = None
        link.target = None  # (this lane goes on with the client: no late event of this connection may reach it)
        pool = self.front.pool
        if not trusted:
            transport.abort()
            pool.distrust(self.key)
        elif self.response.keep_alive and not transport.is_closing():
            pool.give(self.key, transport)
        else:
            transport.close()
        self.client.lane_finished()

    def _forget(self, keep_reading: bool = False) -> None:
        """Let go of the connection of the request in flight (its response read to the end when `keep_reading`;
        else a new reading for the next request: this one's parser is mid-message)."""
        if self.held:
            self.held = False
            self.front.holds.release(self)
        if self.paused:
            self.paused = False
            if keep_reading:
                self.transport.resume_reading()
        if keep_reading:
            self.response.body = []
        else:
            self.response = None
        self.transport = self.link = None
        self.raw = []
        self.head_sent = False

    # -- handing over to the general path
    def _hand_over(self) -> Upstream:
        """The exchange goes on as an upstream.Upstream that sent this request on this connection and has read
        every byte read so far. Returns it."""
        client = self.client
        request = self._request()
        upstream = Upstream(client, request, self.key, self.head, self.front.pool)
        upstream.transport = self.transport
        upstream.reused = upstream.sent = True
        link = self.link
        upstream.reader = link.reader
        link.reader.reset(upstream)
        link.target = upstream
        client.active = request
        client.upstream = upstream
        raw = self.raw
        self._forget()
        if raw:
            upstream.data_received(raw[0] if len(raw) == 1 else b"".join(raw))
        return upstream

    def _request(self) -> Request:
        """The request in flight as the general path's parsing.Request."""
        config = self.config
        request = Request()
        request.method = self.method
        request.target = self.target
        request.headers = self.headers
        path, question, query = self.target.partition(b"?")
        name, _, rest = path[1:].partition(b"/")
        request.route = routing.Route(name.decode("ascii"), b"/" + rest.lstrip(b"/") + question + query,
                                      config.serve_max_body_bytes, False)
        payload = self.payload[0]
        if payload or request.header(b"content-length") is not None:
            request.body = body = Body(config.serve_max_body_bytes, config.body_memory_bytes, "")
            body.write(payload)
            request.length = len(payload)
        request.complete = True
        return request

    def _read_timeout(self) -> None:
        if self.transport is None:
            return
        if self.head_sent:  # between body reads: the status is out, only a cut connection tells the client
            self.abort()
            self.client.abort()
            return
        upstream = self._hand_over()
        if not upstream.done:
            (upstream._read_timeout if upstream.response is None else upstream._body_timeout)()

    # -- what the client and the connection ask of an upstream
    def abort(self) -> None:
        """The client is gone or refused: the upstream connection is dropped."""
        if self.transport is not None:
            self.link.target = None
            self.transport.abort()
            self._forget()

    def pause_reading(self) -> None:
        """The client reads its responses slower than they come."""
        if self.transport is None:
            return
        if self.head_sent:
            self.paused = True
            self.transport.pause_reading()
        else:
            self._hand_over().pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and self.paused:
            self.paused = False
            self.transport.resume_reading()

    def connection_lost(self, exc) -> None:
        if self.transport is None:
            return
        if self.head_sent:  # the body ended early: so must the client's connection (as the general path)
            self._forget()
            self.client.abort()
        else:
            self._hand_over().connection_lost(exc)

    def eof_received(self):
        return False

    def pause_writing(self) -> None:
        pass  # the request went out in one write: nothing more to hold back

    def resume_writing(self) -> None:
        pass
