"""What an attack on the front door found (branch attack9), each fixed since; the tests state the behaviour
expected (each failed before its fix):

- An endpoint that writes bytes after a complete response, in the same packet, while the client has a request
  pipelined behind it: the front gives the connection back to the pool and takes it again for the pipelined
  request inside the same parse, so the stray bytes are relayed as the answer to that request.
- A request for the API is buffered whole (up to KAOS_MAX_UPLOAD_MB, 1 GB by default, in a temporary file) before
  the API sees it, token or not: anyone who reaches the port can make the front write ~1 GB per connection.
- At the connection cap, connections idle between requests (kept alive) hold their places until their
  keep-alive timeout (75 s), and a new client gets 503; nginx closes idle kept-alive connections to make room.
- An HTTP/1.0 request with Transfer-Encoding is de-chunked and its connection kept alive: RFC 9112 6.1 calls
  that framing faulty and wants the connection closed after it.
- A request pipelined behind one in progress that sends `Expect: 100-continue` never gets its 100 Continue: a
  client that waits for it before sending the body is answered 408.
"""
import http.client
import io
import socket
import time

import pytest

from tests.front.support import FRONT_ENV, deploy_endpoint, exchange, health_request, read_response
from tests.support.backend import BackendProcess

# A raw HTTP/1.1 server, connections kept alive: /trailing answers, and in the same write sends a second,
# unasked-for response; anything else is answered with its own path.
STRAY_BYTES_SERVE = r'''#!/usr/bin/env python3
import os, socket, threading
def handle(conn):
    data = b""
    with conn:
        while True:
            while b"\r\n\r\n" not in data:
                more = conn.recv(65536)
                if not more:
                    return
                data += more
            head, _, data = data.partition(b"\r\n\r\n")
            path = head.split(b" ")[1]
            if path == b"/trailing":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                             b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray")
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(path), path))
server = socket.create_server((os.environ["HOST"], int(os.environ["PORT"])), backlog=64)
print("serving", flush=True)
while True:
    threading.Thread(target=handle, args=(server.accept()[0],), daemon=True).start()
'''


class _KeptOpen(io.BufferedReader):
    def close(self):
        pass  # http.client closes its file after each response: the next response is read from the same buffer


class _OneReader:
    """A socket's one buffered reader, for http.client to read pipelined responses one after the other (each
    HTTPResponse made on the socket itself would buffer, and lose, the bytes of the next)."""

    def __init__(self, sock: socket.socket):
        self.file = _KeptOpen(socket.SocketIO(sock, "rb"))

    def makefile(self, mode):
        return self.file

    def response(self):
        response = http.client.HTTPResponse(self)
        response.begin()
        return response.status, response.read()


@pytest.fixture(scope="module")
def stray_endpoint(front_backend):
    return deploy_endpoint(front_backend, "strayws", serve=STRAY_BYTES_SERVE)


def test_bytes_an_endpoint_sends_after_its_response_never_answer_the_next_request(front_backend, stray_endpoint):
    request = b"GET /%s%%s HTTP/1.1\r\nHost: kaos\r\n\r\n" % stray_endpoint.encode()
    with socket.create_connection(("127.0.0.1", front_backend.port), timeout=20) as sock:
        sock.sendall(request % b"/trailing" + request % b"/ping")
        reader = _OneReader(sock)
        first = reader.response()
        second = reader.response()
    assert first == (200, b"ok")
    # the second answer is the endpoint's answer to /ping (on a new connection), or an error: never "stray"
    assert second[1] != b"stray", second


def test_an_api_upload_without_the_token_is_refused_before_its_body_is_read(front_backend):
    with socket.create_connection(("127.0.0.1", front_backend.port), timeout=20) as sock:
        # 50 MB announced, none of it sent: the answer must not wait for the body (it was 408 once it stalled)
        sock.sendall(b"POST /api/workspace/spool HTTP/1.1\r\nHost: kaos\r\nContent-Type: application/zip\r\n"
                     b"Content-Length: %d\r\n\r\n" % (50 * 1024 * 1024))
        answer = read_response(sock)
    assert answer is not None and answer[0] == 401, answer and answer[:2]


def test_at_the_connection_cap_idle_kept_alive_connections_give_way_to_a_new_client(tmp_path):
    server = BackendProcess(tmp_path / "data", env=dict(FRONT_ENV, KAOS_FRONT_MAX_CONNECTIONS="20",
                                                         KAOS_FRONT_KEEPALIVE_TIMEOUT="75")).start()
    held = []
    try:
        for _ in range(20):  # each asks once, is answered, and stays open between requests
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=20)
            sock.sendall(health_request(server))
            answer = read_response(sock)
            assert answer is not None and answer[0] == 200
            held.append(sock)
        time.sleep(0.5)
        with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
            sock.sendall(health_request(server))
            answer = read_response(sock)
        assert answer is not None and answer[0] == 200, answer and answer[:2]
    finally:
        for sock in held:
            sock.close()
        server.stop()


def test_an_http_1_0_request_with_transfer_encoding_does_not_keep_its_connection(front_backend):
    status, _, closed = exchange(front_backend, b"POST /api/health HTTP/1.0\r\nConnection: keep-alive\r\n"
                                                b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert status is not None and closed


def test_a_pipelined_request_that_expects_100_continue_gets_it_once_its_turn_comes(front_backend, endpoint):
    with socket.create_connection(("127.0.0.1", front_backend.port), timeout=20) as sock:
        sock.sendall(b"GET /%s/split HTTP/1.1\r\nHost: kaos\r\n\r\n"  # answered 50 ms later: the POST waits
                     b"POST /%s/upload HTTP/1.1\r\nHost: kaos\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"
                     % (endpoint.encode(), endpoint.encode()))
        reader = _OneReader(sock)
        assert reader.response() == (200, b"split")
        status_line = reader.file.readline()  # the body is sent only after a 100 (a strict client's wait)
    assert status_line.startswith(b"HTTP/1.1 100"), status_line
