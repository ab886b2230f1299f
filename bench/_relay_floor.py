"""The floor for any proxy written like the front (Python on uvloop, or asyncio's loop): bytes relayed as they
come between a TCP port and the endpoint's unix socket, one upstream connection per client connection kept for
its life, no HTTP at all. bench/gateway.py measures it beside the front, so that the front's cost per request is
read against what the event loop and the kernel's two extra hops cost alone.

    python bench/_relay_floor.py PORT UNIX_SOCKET     (listens on 127.0.0.1:PORT until killed)
"""
import asyncio
import socket
import sys


class Upstream(asyncio.Protocol):
    def __init__(self, client: "Client"):
        self.client = client

    def data_received(self, data):
        self.client.transport.write(data)

    def connection_lost(self, exc):
        self.client.transport.close()


class Client(asyncio.Protocol):
    def __init__(self, path: str):
        self.path = path
        self.transport = None
        self.upstream = None
        self.waiting = []

    def connection_made(self, transport):
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self):
        self.upstream, _ = await asyncio.get_running_loop().create_unix_connection(lambda: Upstream(self), self.path)
        for data in self.waiting:
            self.upstream.write(data)
        self.waiting = []

    def data_received(self, data):
        if self.upstream is None:
            self.waiting.append(data)
        else:
            self.upstream.write(data)

    def connection_lost(self, exc):
        if self.upstream is not None:
            self.upstream.close()


def main() -> None:
    port, path = int(sys.argv[1]), sys.argv[2]
    try:
        import uvloop
        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(loop.create_server(lambda: Client(path), "127.0.0.1", port, backlog=1024))
    loop.run_forever()


if __name__ == "__main__":
    main()
