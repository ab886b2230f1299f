"""The front's own Python work per prediction, in one process and without a socket: the quickest reading for work on
the express lane's hot path (no target of its own; bench/front_instructions.py and bench/gateway.py are the
readings that count).

What runs: a Front (kaos_backend/front/server.py) whose client connection and one pooled endpoint connection have
stand-in transports that keep what is written; each exchange feeds the client's request (the mnist template's
test_payload.jpg POSTed as wrk sends it) to the client's `data_received`, then the endpoint's response (as gunicorn
answers it, whole) to the endpoint connection's, as the event loop would. No system call is made and the caches are
hot, so the figure is a lower bound: in bench/gateway.py the same code runs between the load generator's and the
endpoint's turns on a shared CPU, several times slower per instruction. Printed: microseconds per exchange, the
median of ROUNDS rounds; `--profile` prints cProfile's calls and own time per exchange instead.
"""
import argparse
import asyncio
import cProfile
import pstats
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from kaos_backend.front.config import FrontConfig  # noqa: E402
from kaos_backend.front.pool import Link  # noqa: E402
from kaos_backend.front.server import Front  # noqa: E402

NAME = "serve-bench-abc123"
SOCKET = "/nonexistent/endpoint.sock"
ADDRESS = ("PIPELINE_RUNNING", "127.0.0.1", 8080, SOCKET)
PAYLOAD = REPO / "templates" / "mnist" / "test_payload.jpg"
RESPONSE = (b"HTTP/1.1 200 OK\r\nServer: gunicorn\r\nDate: Wed, 02 Dec 2026 12:00:00 GMT\r\nConnection: keep-alive\r\n"
            b"Content-Type: application/json\r\nContent-Length: 16\r\n\r\n{\"result\": [3]}\n")
EXCHANGES = 50_000
ROUNDS = 5


class StandInTransport:
    """What the front asks of a transport, writes kept (the last few)."""

    def __init__(self, protocol=None):
        self.protocol = protocol
        self.written = []

    def write(self, data):
        self.written.append(data)
        if len(self.written) > 16:
            del self.written[:8]

    def get_protocol(self):
        return self.protocol

    def is_closing(self):
        return False

    def get_extra_info(self, name, default=None):
        return ("127.0.0.1", 50000) if name == "peername" else default

    def set_write_buffer_limits(self, high=None, low=None):
        pass

    def get_write_buffer_size(self):
        return 0

    def pause_reading(self):
        pass

    def resume_reading(self):
        pass

    def abort(self):
        pass

    def close(self):
        pass


def exchange_function():
    """One client connection and one endpoint connection on a Front: a function doing one exchange."""
    loop = asyncio.new_event_loop()
    front = Front(loop, "/nonexistent/api.sock", {NAME: ADDRESS}.get, FrontConfig(endpoint_cache_seconds=3600))
    front.endpoints.cache[NAME] = (time.monotonic() + 3600, ADDRESS)
    front.pool.max_requests = 1 << 62  # (one connection for the whole run)
    client = front.protocol()
    client_transport = StandInTransport(client)
    client.connection_made(client_transport)
    link = Link(None)
    endpoint_transport = StandInTransport(link)
    link.transport = endpoint_transport
    front.pool.give(SOCKET, endpoint_transport)
    body = PAYLOAD.read_bytes()
    request = (b"POST /%s/invocations HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Type: image/jpeg\r\n"
               b"Content-Length: %d\r\n\r\n" % (NAME.encode(), len(body)) + body)

    def exchange():
        client.data_received(request)
        link.data_received(RESPONSE)

    for _ in range(100):
        exchange()
    if not client_transport.written or not client_transport.written[-1].endswith(b'{"result": [3]}\n'):
        raise SystemExit(f"the front did not relay the exchange: {client_transport.written[-1:]!r}")
    return exchange


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", action="store_true", help="cProfile's calls and own time per exchange")
    args = parser.parse_args()
    exchange = exchange_function()
    if args.profile:
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(EXCHANGES):
            exchange()
        profile.disable()
        stats = pstats.Stats(profile).stats
        for (path, line, name), (_, calls, own, total, _) in sorted(stats.items(), key=lambda item: -item[1][2])[:25]:
            print(f"{calls / EXCHANGES:6.2f} calls {own / EXCHANGES * 1e9:7.0f} ns own "
                  f"{total / EXCHANGES * 1e9:7.0f} ns in all  {Path(path).name}:{line}:{name}")
        return 0
    rounds = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(EXCHANGES):
            exchange()
        rounds.append((time.perf_counter() - started) / EXCHANGES)
    print(f"front Python work: {statistics.median(rounds) * 1e6:.2f} µs per exchange (median of {ROUNDS} rounds of "
          f"{EXCHANGES:,}; hot caches, no system calls)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
