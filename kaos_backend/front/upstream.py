"""One request's connection to its upstream (a workload's server or the API's gunicorn): connect without blocking
the loop (bounded by proxy_connect_timeout), send the rebuilt head and the buffered body (with backpressure),
parse the response with llhttp and relay it to the client, rebuilt: its head from parsed fields, its body with
the front's framing (Content-Length as given, else chunked for an HTTP/1.1 client, else until close).

A response head is written to the client together with the first bytes of its body: servers (gunicorn among
them) often send the two in separate writes, and relaying each as it comes costs a write and a wake-up of the
client more per response. A head whose body does not follow within `head_hold_seconds` (config.py) goes out
alone (nginx's `postpone_output` does the same for small writes).

Timers (armed on the client, which owns the connection's one deadline): connect -> 502, the response head ->
504, then between reads of a workload's response body -> the client's connection is cut (its status is out).

Keep-alive (a workload's requests, pool.py): the connection comes from the pool when one is idle there, and goes
back after a complete response the server keeps alive (not after a HEAD, a 101, a body delimited by the close,
or with bytes behind the response), before the client's next request starts (that waits for the end of the read
that completed the response): a request pipelined behind it goes on the same connection. A reused connection
that the server closed before any byte of the response (it timed the connection out as the request went) is
retried once on a new connection, for a request that is safe to resend: an idempotent method (RFC 9110 9.2.2)
or one carrying an Idempotency-Key; the body is buffered, so it can be sent again. Other requests (a POST
prediction) get the 502: the server may have acted on them.
"""
import asyncio
import socket
import time
from typing import List, Optional

from kaos_backend.front import answers, routing
from kaos_backend.front.heads import LAST_CHUNK, chunk, end_to_end, response_head
from kaos_backend.front.parsing import Response, ResponseReader, UpstreamProtocolError
from kaos_backend.front.pool import Link
from kaos_backend.front.upstream_failures import UpstreamFailures

HIGH_WATER = 256 * 1024   # bytes queued for a peer before the other side stops being read


def tune(transport) -> None:
    """A new connection of the front's (client or upstream): back-pressure past HIGH_WATER, and no Nagle delay
    on TCP (a response head and body go out as they come)."""
    transport.set_write_buffer_limits(HIGH_WATER)
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


NO_BODY_STATUS = (204, 304)
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})


class Upstream(UpstreamFailures, asyncio.Protocol):
    """Created by the client for one request (client.Client.active) to `address` ((host, port) or a unix path);
    `pool` (pool.Pool) when the connection may be a kept-alive one and kept alive after."""
    __slots__ = ("client", "config", "request", "name", "address", "head", "transport", "reader", "response", "out",
                 "rechunk", "until_close", "done", "sent", "received", "writable", "task", "pool", "reused", "retried",
                 "holding", "hold_timer", "feeding", "give_back", "finish_after_read")

    def __init__(self, client, request, address, head: bytes, pool=None, retried: bool = False):
        self.client = client
        self.config = client.config
        self.request = request
        self.name = request.route.name          # the workload's name, None for the API
        self.address = address
        self.head = head
        self.transport: Optional[asyncio.Transport] = None
        self.reader: Optional[ResponseReader] = None  # the connection's (pool.Link's), set on connecting
        self.response: Optional[Response] = None
        self.out: List[bytes] = []              # bytes for the client, written at the end of a read
        self.rechunk = False
        self.until_close = False
        self.done = False
        self.sent = False                       # the whole request went out
        self.received = False                   # any byte came back
        self.writable: Optional[asyncio.Event] = None
        self.task: Optional[asyncio.Task] = None
        self.pool = pool
        self.reused = False                     # the connection came from the pool
        self.retried = retried                  # this is the one retry of a request
        self.holding = False                    # a head waits in `out` for its body's first bytes
        self.hold_timer: Optional[asyncio.TimerHandle] = None
        self.feeding = False                    # the parser is running (its callbacks are on the stack)
        self.give_back = False                  # reusable once the parser has seen the rest of the read
        self.finish_after_read = False          # the response ended in this read: the client is told after it

    # -- connecting and sending
    def start(self) -> None:
        if self.pool is not None and not self.retried:  # a retry goes on a new connection
            transport = self.pool.take(self.address)
            if transport is not None:
                self.reused = True
                self.transport = transport
                link = transport.get_protocol()
                link.target = self
                self.reader = link.reader
                self.reader.reset(self)
                if not self._send_whole():  # a body in a file: sent piece by piece, in a task
                    self.task = self.client.loop.create_task(self._send())
                return
        self.task = self.client.loop.create_task(self._run())

    async def _run(self) -> None:
        loop, config = self.client.loop, self.config
        deadline = time.monotonic() + config.api_start_timeout
        self.client.arm(config.proxy_connect_timeout, self._connect_timeout)
        self.reader = ResponseReader(self)
        while True:
            try:
                if isinstance(self.address, str):
                    await loop.create_unix_connection(lambda: Link(self, self.reader), self.address)
                else:
                    await loop.create_connection(lambda: Link(self, self.reader), self.address[0], self.address[1])
                break
            except (FileNotFoundError, ConnectionRefusedError) as error:
                if self.done:
                    return
                if self.name is None:  # the API is (re)starting: wait for it a little; health says so at once
                    answer = self.client.api_down_answer(self.request)
                    if answer is None and time.monotonic() < deadline:
                        await asyncio.sleep(0.05)
                        continue
                    self._give_up(answer or answers.api_unhealthy())
                else:
                    await self._endpoint_failed(type(error).__name__, refused=True)  # or its socket file is gone
                return
            except OSError as error:
                if not self.done:
                    await self._failed_before_head(type(error).__name__)
                return
        if self.done:
            self.transport.abort()
            return
        await self._send()

    def _send_whole(self) -> bool:
        """Send the request if its body is in memory (True), in one write; else only arm the read timer."""
        self.client.arm(self.config.proxy_read_timeout, self._read_timeout)
        body = self.request.body
        if body is None or body.in_memory:
            self.transport.write(self.head + body.whole() if body is not None else self.head)
            self.sent = True
            return True
        return False

    async def _send(self) -> None:
        if self._send_whole():
            return
        self.writable = asyncio.Event()
        self.writable.set()
        body = self.request.body
        self.transport.write(self.head)
        for piece in body.pieces():
            if self.done:
                return
            await self.writable.wait()
            if self.done:
                return
            self.transport.write(piece)
            self.client.arm(self.config.proxy_read_timeout, self._read_timeout)
        self.sent = True

    def connection_made(self, transport):
        self.transport = transport
        tune(transport)

    def pause_writing(self):
        if self.writable is not None:
            self.writable.clear()

    def resume_writing(self):
        if self.writable is not None:
            self.writable.set()

    # -- the response
    def data_received(self, data):
        if self.done:
            return
        self.received = True
        self.feeding = True
        try:
            upgraded = self.reader.feed(data)
        except UpstreamProtocolError as error:
            self.give_back = False
            if self.done:  # bytes behind a complete response: the connection is not reused, nor the server's
                self.transport.abort()
                if self.pool is not None:
                    self.pool.distrust(self.address)
                self._finish_after_read()
            elif self.response is None:
                self.transport.abort()
                self.client.loop.create_task(self._failed_before_head(str(error)))
            else:
                self.abort()
                self.client.abort()
            return
        finally:
            self.feeding = False
        if self.give_back:  # the read held nothing behind the response: the connection may carry another
            self.give_back = False
            self._pool_connection()
        if self.done:
            self._finish_after_read()
            return
        if upgraded is not None and self.response is not None and self.response.status == 101:
            self._flush()
            self.done = True
            self.client.tunnel(self.transport, bytes(data[upgraded:]))
            return
        if self.holding:
            if self.hold_timer is None:
                self.hold_timer = self.client.loop.call_later(self.config.head_hold_seconds,
                                                                self._release_head)
        else:
            self._flush()
        if not self.done and not self.client.write_paused and self.response is not None:
            self._arm_body()

    def _release_head(self) -> None:
        self.hold_timer = None
        if self.holding and not self.done:
            self.holding = False
            self._flush()

    def response_head(self, response: Response) -> None:
        client, request = self.client, self.request
        if response.status == 101 and not request.upgrade:
            # an endpoint must not switch a connection the client did not offer: its next requests (the
            # platform's X-Token included) would go to the endpoint's code as tunnelled bytes
            raise UpstreamProtocolError("a 101 Switching Protocols to a request that did not ask to upgrade")
        self.response = response
        if self.name is None:
            for name, _, _ in response.headers:
                handler = routing.API_HANDOFFS.get(name)
                if handler is not None:
                    self.done = True
                    self.transport.close()
                    if handler(client, request, response):
                        return
        headers = end_to_end(response.headers, drop=routing.API_HANDOFFS)
        extra = []
        status = response.status
        if status == 101:
            upgrade = next((value for name, _, value in response.headers if name == b"upgrade"), b"websocket")
            extra += [b"Connection: Upgrade", b"Upgrade: " + upgrade]
            self.out.append(response_head(status, response.status_text, headers, extra))
            return
        no_body = request.method == b"HEAD" or status in NO_BODY_STATUS
        if response.length is not None and (not no_body or request.method == b"HEAD"):
            extra.append(b"Content-Length: %d" % response.length)
        elif not no_body and not response.chunked and response.length is None:
            self.until_close = True
        if not no_body and response.length is None:
            if request.version == "1.1":
                self.rechunk = True
                extra.append(b"Transfer-Encoding: chunked")
            else:
                client.keep_alive = False
        if request.upgrade:
            client.keep_alive = False  # the client meant to switch protocols: its next bytes are not HTTP
        if not client.keep_alive:
            extra.append(b"Connection: close")
        elif request.version == "1.0":
            extra.append(b"Connection: keep-alive")
        self.out.append(response_head(status, response.status_text, headers, extra))
        if no_body:
            self.response_done()
        elif response.length:
            self.holding = True

    def response_body(self, data: bytes) -> None:
        self.holding = False
        if not self.done:
            self.out.append(chunk(data) if self.rechunk else data)

    def response_done(self) -> None:
        if self.done or self.response.status == 101:  # a 101 ends in a tunnel (data_received), not here
            return
        if self.rechunk:
            self.out.append(LAST_CHUNK)
        self.done = True
        self._flush()
        if not self._reusable():
            self.transport.close()
        elif self.feeding:  # bytes may follow in this read (pooled now, the next request would take them)
            self.give_back = True
        else:
            self._pool_connection()
        if self.feeding:  # the client's next request waits for the end of the read: it then finds the connection
            self.finish_after_read = True  # in the pool (a pipelined request took a new connection each time)
        else:
            self.client.response_finished()

    def _finish_after_read(self) -> None:
        """The read that ended the response is parsed (and its connection pooled, if it may be): the client's
        next request, or its close."""
        if self.finish_after_read:
            self.finish_after_read = False
            self.client.response_finished()

    def _pool_connection(self) -> None:
        self.reader.sink = None          # the next request's Upstream takes the connection's reader
        self.transport.resume_reading()  # paused for a slow client: the pool watches it for a close
        self.pool.give(self.address, self.transport)

    def _reusable(self) -> bool:
        return (self.pool is not None and self.sent and self.reader.complete and self.response.keep_alive
                and not self.until_close and self.request.method != b"HEAD" and not self.transport.is_closing())

    def _flush(self) -> None:
        if self.hold_timer is not None:
            self.hold_timer.cancel()
            self.hold_timer = None
        if self.out:
            out, self.out = self.out, []
            self.client.send(out[0] if len(out) == 1 else b"".join(out))

    def eof_received(self):
        return False

    def connection_lost(self, exc):
        if self.writable is not None:
            self.writable.set()
        if self.done:
            return
        if self.response is not None:
            if self.until_close:
                self.response_done()
            else:  # the body ended early: so must the client's connection
                self.done = True
                self.client.abort()
            return
        self.done = True
        if self.reused and not self.received and not self.retried and self._resendable():
            if self.client.upstream is self:
                self.client.upstream = again = Upstream(self.client, self.request, self.address, self.head,
                                                        self.pool, retried=True)
                again.start()
            return
        self.client.loop.create_task(self._failed_before_head(type(exc).__name__ if exc else "connection closed"))

    def _resendable(self) -> bool:
        return self.request.method in IDEMPOTENT or self.request.header(b"idempotency-key") is not None

    def pause_reading(self) -> None:
        """The client reads its response slower than it comes: stop reading the upstream."""
        if self.transport is not None and not self.done:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.done:
            self.transport.resume_reading()
            if self.response is None:
                self.client.arm(self.config.proxy_read_timeout, self._read_timeout)
            else:
                self._arm_body()

    def _arm_body(self) -> None:
        """Between reads of a workload's response body: proxy_read_timeout. The API's streamed answers (log
        follows, which wait for a workload's next line) are not cut: the client leaving ends them."""
        if self.name is None:
            self.client.disarm()
        else:
            self.client.arm(self.config.proxy_read_timeout, self._body_timeout)
