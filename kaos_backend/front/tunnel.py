"""The byte tunnel of an upgraded connection (a WebSocket after its 101): what one side sends is written to the
other untouched, with backpressure both ways (a side whose peer cannot keep up is not read) and an idle timeout
(no byte either way for `tunnel_idle_timeout` seconds closes both). Either side closing closes the other."""
import asyncio


class _Side(asyncio.Protocol):
    """The protocol of one of the two transports once the tunnel owns them."""

    def __init__(self, tunnel: "Tunnel", peer: asyncio.Transport, is_client: bool):
        self.tunnel = tunnel
        self.peer = peer
        self.is_client = is_client

    def data_received(self, data):
        self.peer.write(data)
        self.tunnel.active()

    def eof_received(self):
        return False

    def pause_writing(self):
        self.peer.pause_reading()

    def resume_writing(self):
        self.peer.resume_reading()

    def connection_lost(self, exc):
        if self.is_client:
            self.tunnel.client.connection_lost(exc)
        self.tunnel.close()


class Tunnel:
    def __init__(self, client, client_transport: asyncio.Transport, upstream_transport: asyncio.Transport):
        self.client = client
        self.client_transport = client_transport
        self.upstream_transport = upstream_transport
        self.closed = False

    def active(self) -> None:
        self.client.arm(self.client.config.tunnel_idle_timeout, self.close)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.upstream_transport.close()
        self.client.close()  # (aborted at the send timeout if its client reads none of what is left to send)


def join(client, client_transport: asyncio.Transport, upstream_transport: asyncio.Transport,
         to_upstream: bytes, to_client: bytes) -> Tunnel:
    """Tie the two transports together; `to_upstream`/`to_client` are bytes that came before the tunnel."""
    tunnel = Tunnel(client, client_transport, upstream_transport)
    client_transport.set_protocol(_Side(tunnel, upstream_transport, True))
    upstream_transport.set_protocol(_Side(tunnel, client_transport, False))
    upstream_transport.resume_reading()
    if to_upstream:
        upstream_transport.write(to_upstream)
    if to_client:
        client_transport.write(to_client)
    tunnel.active()
    return tunnel
