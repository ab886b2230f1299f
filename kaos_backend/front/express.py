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
(A read that is a whole head whose body follows in later reads is held for it: express_body.py.) The request head
is rebuilt as the general path rebuilds it (the same headers dropped; Host and Content-Length the front's) and sent
with the body in one write.

Plans: most connections send the same head again and again (a client posting features to one endpoint). A read
whose head is byte for byte that of the connection's last request the lane took, and whose body has that length,
would be parsed by llhttp to the same outcome (a body of a declared length is not looked at), so the lane sends the
head it rebuilt then, without parsing (`_relay_as_planned`): parsing and rebuilding are most of its work. The same
holds for a response head byte for byte that of the connection's last plain response (express_exchange.py), the
Date header making it new each second. One plan each way per connection, heads up to PLAN_MAX_HEAD bytes.

The response is read by express_response.ResponseReading. A plain one whole within `head_hold_seconds` of its first
bytes goes out, head and body, in one write; one whose body is late has its head sent alone when the hold runs out
and its body relayed as it comes (as the general path does); then the connection goes back to the pool. Anything
else (what express_response says is not plain: a 1xx or 101, a chunked, close-delimited or large body, a head past
the general path's bounds, bytes after the response; a head not whole when the hold runs out, the read timeout
before the head is out, the server closing, the client reading slowly) hands the exchange to an upstream.Upstream
with every byte read so far, and the request's read timer with it: the general path goes on from there as if it had
relayed the request itself (retries, 502/504, streaming with backpressure). tests/front/test_express.py compares
the bytes both paths send, each way, over a corpus; test_express_fuzz.py over random cases.
"""
import time
from typing import List, Optional

import httptools

from kaos_backend.front import routing
from kaos_backend.front.endpoints import UNKNOWN
from kaos_backend.front.express_body import EXPRESS_REQUEST_BYTES, ExpressBody
from kaos_backend.front.express_exchange import ExpressExchange
from kaos_backend.front.express_response import STOP, ResponseReading, plannable
from kaos_backend.front.heads import FORWARDING, FRAMING, HOP_BY_HOP, Header
from kaos_backend.front.reading import WAIT

_PREFIXES = tuple(prefix[1:] for prefix in routing.WORKLOAD_PREFIXES)  # b"serve-", b"notebook-"
_DECLINED = frozenset({b"transfer-encoding", b"expect"})  # framing or an interim answer: the general path's


def eligible(data) -> bool:
    """A first cheap look at a read: does it start like a request to a workload (`METHOD /serve-...`)?"""
    space = data.find(b" ", 0, 16)
    return space > 0 and data.startswith(b"/", space + 1) and data.startswith(_PREFIXES, space + 2)


class Express(ExpressBody, ExpressExchange):
    """The express lane of one client connection (client.Client), reused for each of its requests. While a request
    is in flight it is the client's `active` request and its `upstream`, and the target of the pooled connection's
    pool.Link; it offers what the client asks of those (`body`, `upgrade`, `abort`, `pause_reading`...)."""
    __slots__ = ("client", "front", "config", "request_parser", "skip", "small_head", "max_headers", "target",
                 "headers", "lines", "hosts", "payload", "messages", "complete", "method", "response", "raw",
                 "raw_size", "held", "head_sent", "paused", "transport", "link", "key", "head", "last", "read_timeout",
                 "max_body", "on_read_timeout", "forwarded_for", "plan", "answer", "declared",
                 "collected", "collected_size", "expected", "answering")
    body = None       # as a client's active request: no body.Body to close (the payload is bytes)
    upgrade = False   # ... and no tunnel to open

    def __init__(self, client):
        self.client = client
        self.front = client.front
        config = self.config = client.config
        self.request_parser: Optional[httptools.HttpRequestParser] = None
        # the request headers not forwarded (as client._to_address drops them); hand-off names are registered at
        # the front's start, so by now
        self.skip = (HOP_BY_HOP | FRAMING | {b"host", b"x-token", b"expect", *FORWARDING}
                     | frozenset(routing.API_HANDOFFS))
        # a head no longer than this is within every size bound (target, one field, the whole head): only a
        # longer one has its sizes counted. The head's bound counts 4 bytes a header besides its name and value,
        # one more than `name:value` CRLF takes: hence the margin of one byte a header
        self.small_head = min(config.max_target_bytes, config.max_header_field_bytes - 2,
                              config.max_head_bytes - config.max_headers)
        self.max_headers = config.max_headers
        self.max_body = config.serve_max_body_bytes
        self.target = b""
        self.headers: List[Header] = []  # as parsing.Request keeps them, for a hand-over
        self.lines: List[bytes] = []     # the forwarded head's lines, built as the headers come
        self.hosts = 0
        self.forwarded_for = 0              # the request's own X-Forwarded-For headers
        self.payload: List[bytes] = []
        self.messages = 0
        self.complete = False
        self.method: Optional[bytes] = None  # set once the head is whole
        self.declared: Optional[bytes] = None  # the request's Content-Length, as sent
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
        # the last request taken and response relayed, as read and as sent on (see _relay_as_planned and
        # express_exchange.ExpressExchange.data_received): (head as read, read's size, name, address, pool key,
        # head sent, method, target, headers) and (head as read, read's size, head sent)
        self.plan: Optional[tuple] = None
        self.answer: Optional[tuple] = None
        self.answering = False              # the response's head is the planned answer's, its body to come
        self.collected: List[bytes] = []    # a request's reads while its body comes (express_body.py)
        self.collected_size = 0
        self.expected = 0

    # -- the request
    def relay(self, data) -> bool:
        """Relay `data` (one read, the connection between requests, no matter its target: `eligible` is checked
        here) if it is one request the lane takes: True
        when sent upstream, or when its head is whole and the lane waits for the rest of its body
        (express_body.py); False, with nothing changed, for the general path to handle. Nothing of a request is
        kept once it is declined or answered."""
        plan = self.plan
        if plan is not None and data.startswith(plan[0]):
            if len(data) == plan[1]:
                taken = self._relay_as_planned(data, plan)
                if taken is not None:
                    return taken
            elif len(data) < plan[1] <= EXPRESS_REQUEST_BYTES:
                return self.collect_from(data, plan[1])
        if not eligible(data):
            return False
        parser = self.request_parser
        if parser is None:
            parser = self.request_parser = httptools.HttpRequestParser(self)
        self.target = b""
        self.headers = []
        self.lines = [b""]
        self.payload = []
        self.hosts = self.messages = self.forwarded_for = 0
        self.complete = False
        self.method = self.declared = None
        try:
            parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            # refused, stopped by a callback, or an Upgrade: the general path's (it parses the read again)
            self.request_parser = None
            return self._decline()
        if not self.complete or self.messages != 1:
            self.request_parser = None     # part of a request, or pipelined ones
            if self.messages == 1 and self.method is not None and self.declared is not None:
                return self._collect_rest(data)  # a whole head, its body to follow
            return self._decline()
        payload = self.payload[0] if len(self.payload) == 1 else b"".join(self.payload)
        if len(data) - len(payload) > self.small_head and not self._within_bounds():
            return self._decline()
        if len(payload) > self.max_body:
            return self._decline()
        route = self._route()
        if route is None:
            return self._decline()
        name, address, host_line, key = route
        transport = self.front.pool.take(key)
        if transport is None:
            return self._decline()
        # taken: from here the request is the lane's
        client = self.client
        method = self.method
        lines = self.lines
        path, question, query = self.target.partition(b"?")
        lines[0] = method + b" /" + path[1:].partition(b"/")[2].lstrip(b"/") + question + query + b" HTTP/1.1"
        lines.append(host_line)
        lines.append(client.forward or client.forwarding(None, False) if not self.forwarded_for else
                     client.forwarding(self.headers))
        if payload or method == b"POST" or method == b"PUT" or method == b"PATCH":
            lines.append(b"Content-Length: %d" % len(payload))
        lines.append(b"\r\n")
        head = b"\r\n".join(lines)
        self.lines = ()
        raw_head = len(data) - len(payload)  # (the head as read: its end, and so its bytes, checked before the plan)
        if plannable(data, raw_head):
            self.plan = (data[:raw_head], len(data), name.decode("latin-1"), address, key, head, method,
                         self.target, self.headers)
        self._send(transport, key, head, payload)
        return True

    def _route(self) -> Optional[tuple]:
        """Where the parsed request goes if the lane may take it: (name, address, Host line, pool key), else None
        (the method, Host, target or endpoint is the general path's)."""
        method = self.method
        if method == b"HEAD" or method == b"CONNECT" or self.hosts != 1:
            return None
        path = self.target.partition(b"?")[0]
        if b"%" in path or b"\\" in path or b"/." in path:
            return None
        name = path[1:].partition(b"/")[0]
        if name.startswith(b"notebook-"):  # keeps its path and Host: the general path's
            return None
        last_name, address, host_line = self.last
        current = self.front.endpoints.cached(name.decode("latin-1"))
        if current is not address or name != last_name:
            address = current
            if address is UNKNOWN or address is None or address[2] is None:
                return None
            host_line = b"Host: %s:%d" % (address[1].encode(), address[2])
            self.last = (name, address, host_line)
        key = address[3] if len(address) > 3 and address[3] else (address[1], address[2])
        return name, address, host_line, key

    def _relay_as_planned(self, data, plan) -> Optional[bool]:
        """`relay` for a read whose head is, byte for byte, that of this connection's last request the lane took
        (`plan`), and whose body has that request's length: llhttp would parse it the same way (a body of a
        declared length is not looked at), so its outcome is reused instead (what parsing and rebuilding the head
        cost is most of the lane's work). None when the endpoint's address changed since (the plan's Host line is
        stale): `relay` parses the read then."""
        raw_head, _, name, address, key, head, method, target, headers = plan
        if self.front.endpoints.cached(name) is not address:
            return None
        transport = self.front.pool.take(key)
        if transport is None:
            return False
        self.method, self.target, self.headers = method, target, headers
        self._send(transport, key, head, data[len(raw_head):])
        return True

    def _send(self, transport, key, head: bytes, payload: bytes) -> None:
        """The request out on the pooled connection `transport` (pool key `key`), head and body in one write, its
        response awaited (express_exchange.py)."""
        client = self.client
        self.head = head
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
        client.state = WAIT
        client.active = client.upstream = self
        client.keep_alive = True
        client.deadline, client.on_deadline = time.monotonic() + self.read_timeout, self.on_read_timeout  # (arm)

    def _decline(self) -> bool:
        """False, keeping nothing of the read (its body may be a read's 256 KiB) for the general path's turn."""
        self.headers = self.lines = self.payload = ()
        return False

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
        elif lowered == b"x-forwarded-for":
            self.forwarded_for += 1
        elif lowered == b"content-length":
            self.declared = value  # (llhttp takes one only, of digits: a head it accepted has it right)
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
