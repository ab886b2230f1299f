"""Issue 9, inputs 1 and 3: the front's memory stays flat under a stream of unknown names; every wait is bounded
(408 for a slow request, 504 for a slow upstream, a cut connection for a body that stops); a client that leaves
takes its upstream connection with it (tests/front/test_client_gone.py)."""
import socket

from tests.front.support import front_process, read_response


def _get(sock: socket.socket, path: bytes) -> int:
    sock.sendall(b"GET %s HTTP/1.1\r\nHost: kaos\r\n\r\n" % path)
    return read_response(sock)[0]


def test_memory_stays_flat_after_3000_unique_unknown_names(front_backend):
    front = front_process(front_backend)
    with socket.create_connection(("127.0.0.1", front_backend.port), timeout=60) as sock:
        for number in range(300):  # warm up: the lookup's thread, the database connection, the cache
            assert _get(sock, b"/serve-warm-%06d/x" % number) == 404
        before = front.memory_info().rss
        for number in range(3000):
            assert _get(sock, b"/serve-%s-%06d/x" % (b"n" * 6000, number)) == 404  # 6 kB names: none is looked up
            assert _get(sock, b"/serve-ws%d-%06x/x" % (number, number)) == 404     # real-looking: cached briefly
    grown = front.memory_info().rss - before
    assert grown < 8 * 1024 * 1024, f"the front grew by {grown} bytes"


def test_a_request_head_that_never_ends_gets_408(front_backend):
    with socket.create_connection(("127.0.0.1", front_backend.port), timeout=20) as sock:
        sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: kaos\r\n")
        status, body, _ = read_response(sock)  # KAOS_FRONT_CLIENT_HEADER_TIMEOUT is 2 s here
        assert status == 408 and b"REQUEST_TIMEOUT" in body
        assert sock.recv(1) == b""


def test_a_body_that_stops_gets_408(front_backend, endpoint):
    for target in (f"/{endpoint}/invocations".encode(), b"/api/data/frontws/features"):
        with socket.create_connection(("127.0.0.1", front_backend.port), timeout=20) as sock:
            sock.sendall(b"POST %s HTTP/1.1\r\nHost: kaos\r\nX-Token: test-token\r\nContent-Length: 500000\r\n\r\n"
                         % target + b"x" * 10000)
            status, body, _ = read_response(sock)  # KAOS_FRONT_CLIENT_BODY_TIMEOUT is 2 s here
            assert status == 408 and b"REQUEST_TIMEOUT" in body


def test_an_upstream_that_never_answers_gets_504(front_backend, endpoint):
    with socket.create_connection(("127.0.0.1", front_backend.port), timeout=20) as sock:
        assert _get(sock, f"/{endpoint}/hang".encode()) == 504  # KAOS_FRONT_PROXY_READ_TIMEOUT is 2 s here
        assert _get(sock, f"/{endpoint}/ping".encode()) == 200  # the same connection goes on


def test_a_head_goes_out_with_the_first_bytes_of_its_body(front_backend, endpoint):
    """The endpoint writes its head and, 50 ms later, its body: the client gets both in one piece, one write of
    the front's and not two (KAOS_FRONT_HEAD_HOLD_SECONDS is 1 s here). A head whose body never comes is not held
    past the hold: the next test."""
    with socket.create_connection(("127.0.0.1", front_backend.port), timeout=20) as sock:
        sock.sendall(b"GET /%s/split HTTP/1.1\r\nHost: kaos\r\n\r\n" % endpoint.encode())
        first = sock.recv(65536)
    assert first.startswith(b"HTTP/1.1 200 ") and first.endswith(b"\r\n\r\nsplit"), first


def test_an_upstream_that_sends_a_head_and_no_body_is_cut(front_backend, endpoint):
    with socket.create_connection(("127.0.0.1", front_backend.port), timeout=20) as sock:
        sock.sendall(b"GET /%s/headonly HTTP/1.1\r\nHost: kaos\r\n\r\n" % endpoint.encode())
        data = b""
        while True:
            piece = sock.recv(65536)
            if not piece:
                break
            data += piece
        assert data.startswith(b"HTTP/1.1 200 ") and b"Content-Length: 100" in data
