"""A client that sends whole requests and then shuts its write side (shutdown(SHUT_WR), `nc -N`) still reads: what
it asked for is relayed (to the API or an endpoint, on the express lane or the general path), then the
connection is closed. One that half-closes in the middle of a request has left: nothing is answered."""
import socket

import pytest

from tests.front.support import health_request


def _half_closed_exchange(port: int, data: bytes, timeout: float = 20) -> bytes:
    """Send `data`, shut the write side, read until the front closes: every byte it sent."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while True:
            piece = sock.recv(65536)
            if not piece:
                return received
            received += piece


def _invocation(endpoint: str, body: bytes = b'{"x": 1}') -> bytes:
    return (b"POST /%s/invocations HTTP/1.1\r\nHost: kaos\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (endpoint.encode(), len(body), body))


@pytest.mark.parametrize("close", [True, False], ids=["connection-close", "keep-alive"])
def test_an_api_request_then_half_close_is_answered(front_backend, close):
    request = health_request(front_backend)
    if close:
        request = request.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
    answer = _half_closed_exchange(front_backend.port, request)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]


def test_an_endpoint_request_then_half_close_is_answered(front_backend, endpoint):
    answer = _half_closed_exchange(front_backend.port, _invocation(endpoint))
    assert answer.startswith(b"HTTP/1.1 200 ") and b'"size": 8' in answer, answer[:300]


def test_pipelined_requests_then_half_close_are_all_answered(front_backend, endpoint):
    # the first warms the pool (the second may take the express lane), the half-close comes after both
    answer = _half_closed_exchange(front_backend.port, _invocation(endpoint) + _invocation(endpoint, b"{}"))
    assert answer.count(b"HTTP/1.1 200 ") == 2 and b'"size": 2' in answer, answer[:600]


def test_a_half_close_in_the_middle_of_a_request_is_a_client_that_left(front_backend, endpoint):
    partial = _invocation(endpoint, b"0123456789")[:-5]
    assert _half_closed_exchange(front_backend.port, partial) == b""
    assert _half_closed_exchange(front_backend.port, health_request(front_backend)[:-2]) == b""
