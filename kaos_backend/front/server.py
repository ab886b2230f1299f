"""The listening socket's server: the open client connections (capped), their deadlines (one tick checks them
all), the endpoint cache, and what the front answers while the API is down."""
import asyncio
import os
import socket
import sys
import time
from typing import Callable, Optional

from kaos_backend.front.client import Client
from kaos_backend.front.config import MB, FrontConfig
from kaos_backend.front.endpoints import Address, Endpoints
from kaos_backend.front.express_response import HeadHolds
from kaos_backend.front.pool import Pool

API_MULTIPART_SLACK = 1 * MB   # kaos_backend.app.MULTIPART_SLACK: framing around an upload's data part
OVER_CAP_ABORT = 64            # connections past the cap answered 503; past this many more, dropped at once


class Front:
    """`api_address` is gunicorn's (a unix socket path or (host, port)); `lookup(name)` finds a workload's
    address (endpoints.endpoint_lookup); `max_upload_mb` is the API's upload limit (KAOS_MAX_UPLOAD_MB)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, api_address, lookup: Callable[[str], Optional[Address]],
                 config: Optional[FrontConfig] = None, max_upload_mb: int = 1024):
        self.loop = loop
        self.api_address = api_address
        self.config = config or FrontConfig()
        self.endpoints = Endpoints(lookup, loop, self.config.endpoint_cache_size, self.config.endpoint_cache_seconds,
                                   self.config.negative_cache_seconds)
        self.api_max_body = max_upload_mb * MB + API_MULTIPART_SLACK
        self.api_limit_message = f"Upload is larger than the limit of {max_upload_mb} MB"
        self.clients = set()
        self.holds = HeadHolds(loop, self.config.head_hold_seconds)  # the express lane's held response heads
        # ... and request heads for their body (no longer than a body may stall on the general path)
        self.body_holds = HeadHolds(loop, min(self.config.body_hold_seconds, self.config.client_body_timeout),
                                    "body_hold_expired")
        self.pool = Pool(self.config.upstream_keepalive, self.config.upstream_keepalive_total,
                         self.config.upstream_keepalive_timeout, self.config.upstream_keepalive_requests)
        # the API's token (KAOS_TOKEN): an API request with a body and without it is refused before its body is
        # read (the API would refuse it after: the front would have buffered up to the upload limit for nothing)
        self.token: Optional[bytes] = None
        # (target, headers) -> the answer to a request for the API while the API is not up, or None to relay it
        self.api_down: Optional[Callable[[bytes, list], Optional[bytes]]] = None
        # the internal listener (KAOS_INTERNAL_PORT): only the internal artifact routes, everything else 404
        self.internal_only = False

    def protocol(self) -> Client:
        return Client(self)

    def admit(self, client: Client) -> bool:
        """Count a new connection: False past the cap (it is answered 503 and closed). At the cap, a connection
        waiting for its next request (kept alive between requests, or open with nothing sent yet) is closed to
        make room first, as nginx reuses its waiting connections: idle ones cannot hold the cap against new
        clients."""
        if len(self.clients) >= self.config.max_connections:
            self._close_a_waiting_connection()
        if len(self.clients) >= self.config.max_connections + OVER_CAP_ABORT:
            client.transport.abort()
            return True
        self.clients.add(client)
        return len(self.clients) <= self.config.max_connections

    def _close_a_waiting_connection(self) -> None:
        """Close the waiting connection whose deadline is nearest (the one that has waited longest, for its
        kind); nothing when none waits."""
        waiting = [other for other in self.clients if other.waiting()]
        if waiting:
            chosen = min(waiting, key=lambda other: other.deadline if other.deadline is not None else 0.0)
            chosen.close()
            self.clients.discard(chosen)

    def forget(self, client: Client) -> None:
        self.clients.discard(client)

    def log(self, message: str) -> None:
        print(f"[{time.strftime('%Y-%m-%d %H:%M:%S %z')}] [{os.getpid()}] [WARNING] kaos_backend.front: {message}",
              file=sys.stdout, flush=True)

    def tick(self) -> None:
        """Run the deadlines that have passed, then again in `config.tick` seconds."""
        now = time.monotonic()
        self.pool.sweep()
        for client in list(self.clients):
            if client.deadline is not None and now >= client.deadline:
                try:
                    client.expire(now)
                except Exception as error:  # noqa: BLE001 - one connection's trouble must not stop the tick
                    self.log(f"a deadline failed: {error!r}")
                    client.abort()
        self.loop.call_later(self.config.tick, self.tick)

    async def serve(self, sock: socket.socket, ready: Optional[Callable[[], None]] = None) -> None:
        server = await self.loop.create_server(self.protocol, sock=sock, backlog=1024)
        if ready is not None:
            ready()
        self.loop.call_later(self.config.tick, self.tick)
        async with server:
            await server.serve_forever()
