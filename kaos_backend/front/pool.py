"""Idle upstream connections kept alive for reuse (nginx's upstream `keepalive`), per endpoint address.

A connection goes back to the pool only after a complete response that the server did not mark as its last
(upstream.Upstream decides); while idle, a server that closes it or sends anything drops it from the pool (Link).
Bounds: at most `per_address` idle connections to one address and `total` in all (past either a connection is
closed rather than kept), each kept at most `idle_seconds` (shorter than common servers' own keep-alive timeouts,
e.g. gunicorn's 2 s, so the front is rarely the one to find a connection the server has just closed; `upstream`
retries that case once for a request that is safe to resend), and each used for at most `max_requests` responses
(nginx's keepalive_requests). That last bound deals an endpoint's connections again now and then: gunicorn's
workers each accept from the one listener as they wake, so the connections the front opens in a burst can all
land on one worker (benoitc/gunicorn#2817, #3433), which then serves every request on one core while the other
workers idle, for as long as the connections live; the connection that replaces a closed one goes to a worker
waiting in accept, that is, an idle one.

A server that speaks out of turn (bytes while its connection is idle, or behind a complete response) is not
pooled again for DISTRUST_SECONDS: bytes it sends late could otherwise arrive just as its connection carries the
next request, and be taken for that request's response (the keep-alive race every HTTP/1.1 proxy has). Its
requests still go through, each on a connection of its own.
"""
import asyncio
import time
from collections import OrderedDict, deque
from typing import Deque, Dict, Hashable, Optional, Tuple

DISTRUST_SECONDS = 60.0
MAX_DISTRUSTED = 1024     # addresses remembered (the oldest forgotten first)


class Link(asyncio.Protocol):
    """The one protocol of an upstream connection, for its whole life. Its events go to `target`, the
    upstream.Upstream relaying a request; while the connection waits in a pool (`target` None) the link itself
    drops it from the pool when the server closes it or sends anything (a server speaking out of turn). `reader`
    is the connection's response parser (parsing.ResponseReader), reset for each request. Changing the transport's
    protocol instead (set_protocol) makes uvloop stop and start reading: two epoll changes (system calls) at each
    of a request's two hand-overs, and an object made per request."""
    __slots__ = ("target", "reader", "pool", "address", "transport", "responses")

    def __init__(self, target: Optional[asyncio.BaseProtocol], reader=None):
        self.target = target
        self.reader = reader
        self.pool: Optional["Pool"] = None      # while idle: the pool holding the connection, under `address`
        self.address: Hashable = None
        self.transport: Optional[asyncio.Transport] = None
        self.responses = 0                      # complete responses the connection carried (counted by the pool)

    def connection_made(self, transport):
        self.transport = transport
        self.target.connection_made(transport)

    def data_received(self, data):
        target = self.target
        if target is not None:
            target.data_received(data)
        else:
            if self.pool is not None:
                self.pool.distrust(self.address)
            self._leave_pool()
            self.transport.abort()

    def eof_received(self):
        return self.target.eof_received() if self.target is not None else False

    def connection_lost(self, exc):
        if self.target is not None:
            self.target.connection_lost(exc)
        else:
            self._leave_pool()

    def pause_writing(self):
        if self.target is not None:
            self.target.pause_writing()

    def resume_writing(self):
        if self.target is not None:
            self.target.resume_writing()

    def _leave_pool(self) -> None:
        if self.pool is not None:
            self.pool.discard(self.address, self.transport)
            self.pool = None


class Pool:
    """`take(address)` -> an idle transport or None; `give(address, transport)` after a complete response. The
    transports are those of connections made with a `Link` protocol: `take`'s caller sets the link's target."""

    def __init__(self, per_address: int = 32, total: int = 512, idle_seconds: float = 1.5, max_requests: int = 100):
        self.per_address = per_address
        self.total = total
        self.idle_seconds = idle_seconds
        self.max_requests = max_requests
        self.idle: Dict[Hashable, Deque[Tuple[float, asyncio.Transport]]] = {}
        self.count = 0
        self.distrusted: "OrderedDict[Hashable, float]" = OrderedDict()  # address -> until (monotonic)

    def take(self, address: Hashable) -> Optional[asyncio.Transport]:
        """The most recently used idle connection to `address` that is still fresh (older ones are closed)."""
        queue = self.idle.get(address)
        if not queue:
            return None
        now = time.monotonic()
        while queue:  # (an emptied queue stays, for the next `give`; `sweep` drops it)
            since, transport = queue.pop()
            self.count -= 1
            if now - since < self.idle_seconds and not transport.is_closing():
                return transport
            transport.abort()
        return None

    def give(self, address: Hashable, transport: asyncio.Transport) -> None:
        """Keep `transport` (its response complete, the server keeping it alive) for the next request, unless it has
        carried `max_requests` responses."""
        link = transport.get_protocol()
        link.responses += 1
        if self.distrusted and self._distrusted(address):
            transport.close()
            return
        queue = self.idle.get(address)
        if queue is None:
            queue = self.idle[address] = deque()
        if (len(queue) >= self.per_address or self.count >= self.total or link.responses >= self.max_requests
                or transport.is_closing()):
            transport.close()
            return
        link.target, link.pool, link.address, link.transport = None, self, address, transport
        queue.append((time.monotonic(), transport))
        self.count += 1

    def distrust(self, address: Hashable) -> None:
        """`address`'s server spoke out of turn: its connections are not kept for DISTRUST_SECONDS."""
        self.distrusted[address] = time.monotonic() + DISTRUST_SECONDS
        self.distrusted.move_to_end(address)
        while len(self.distrusted) > MAX_DISTRUSTED:
            self.distrusted.popitem(last=False)
        for _, transport in self.idle.pop(address, ()):
            self.count -= 1
            transport.abort()

    def _distrusted(self, address: Hashable) -> bool:
        until = self.distrusted.get(address)
        if until is None:
            return False
        if time.monotonic() < until:
            return True
        del self.distrusted[address]
        return False

    def discard(self, address: Hashable, transport: asyncio.Transport) -> None:
        queue = self.idle.get(address)
        if not queue:
            return
        for entry in queue:
            if entry[1] is transport:
                queue.remove(entry)
                self.count -= 1
                break

    def sweep(self) -> None:
        """Close the connections idle past `idle_seconds` (called by the server's tick); forget emptied queues."""
        deadline = time.monotonic() - self.idle_seconds
        for address in list(self.idle):
            queue = self.idle[address]
            while queue and queue[0][0] <= deadline:
                _, transport = queue.popleft()
                self.count -= 1
                transport.abort()
            if not queue:
                del self.idle[address]

    def close(self) -> None:
        for queue in self.idle.values():
            for _, transport in queue:
                transport.abort()
        self.idle.clear()
        self.count = 0
