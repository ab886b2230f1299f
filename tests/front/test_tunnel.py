"""Issue 9, input 6: a WebSocket handshake to an endpoint is relayed (its 101 with Upgrade and Connection), then
a byte tunnel both ways."""
import socket

from tests.front.support import health_request, read_response, websocket_handshake, websocket_receive, websocket_send


def test_a_websocket_echo_endpoint_round_trips_1000_messages_through_the_gateway(front_backend, endpoint):
    with socket.create_connection(("127.0.0.1", front_backend.port), timeout=30) as sock:
        head = websocket_handshake(sock, f"/{endpoint}/ws".encode())
        assert head.startswith(b"HTTP/1.1 101 ")
        lines = head.lower().split(b"\r\n")
        assert b"upgrade: websocket" in lines and b"connection: upgrade" in lines
        for number in range(1000):
            message = b"message %d " % number + b"x" * (number % 300)
            websocket_send(sock, message)
            assert websocket_receive(sock) == (1, message)
        websocket_send(sock, b"", opcode=8)
        assert websocket_receive(sock)[0] == 8
        sock.settimeout(10)
        assert sock.recv(1) == b""  # the endpoint closed: so did the tunnel


def test_an_idle_tunnel_is_closed(front_backend, endpoint):
    with socket.create_connection(("127.0.0.1", front_backend.port), timeout=30) as sock:
        websocket_handshake(sock, f"/{endpoint}/ws".encode())
        websocket_send(sock, b"hello")
        assert websocket_receive(sock) == (1, b"hello")
        sock.settimeout(30)  # KAOS_FRONT_TUNNEL_IDLE_TIMEOUT is 5 s here
        assert sock.recv(1) == b""


def test_an_unasked_101_is_a_502_and_the_connection_stays_http(front_backend, endpoint):
    """Found by an attacker: an endpoint answering 101 to a request that did not offer to upgrade turned the
    client's keep-alive connection into a tunnel, so its next request (X-Token and all) went to the endpoint."""
    with socket.create_connection(("127.0.0.1", front_backend.port), timeout=30) as sock:
        sock.sendall(f"GET /{endpoint}/unasked-101 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        status, body, _ = read_response(sock)
        assert status == 502 and b"ENDPOINT_ERROR" in body, (status, body)
        sock.sendall(health_request(front_backend))
        answer = read_response(sock)
        assert answer is None or answer[0] == 200, answer  # the API answered, or the front closed: no tunnel


def test_a_status_out_of_range_is_a_502(front_backend, endpoint):
    with socket.create_connection(("127.0.0.1", front_backend.port), timeout=30) as sock:
        sock.sendall(f"GET /{endpoint}/status-99 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        status, body, _ = read_response(sock)
        assert status == 502 and b"ENDPOINT_ERROR" in body, (status, body)
