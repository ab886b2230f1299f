"""The front keeps its connections to an endpoint alive and reuses them (pool.py): seen from the endpoint's side,
which reports the connection each request came on. A connection the server closes after its answer
(Connection: close) is not reused; a reused one the server closes before answering is retried once on a new
connection for a request safe to resend (GET), and not for a POST (a 502, and the server saw it once)."""
import re
import socket
import time

import pytest
import requests

from tests.front import express_fuzz
from tests.front.support import deploy_endpoint

# A threaded HTTP/1.1 server: connections kept alive. GET /conn answers {"port": the peer's port, "count": requests
# on this connection}; /close answers with Connection: close; /drop-next answers, and the next request on the same
# connection is dropped unanswered (the connection closed), as a server timing out an idle connection would;
# /stray answers, and 0.3 s later writes a second response nobody asked for on the same connection.
KEEPALIVE_SERVE = r'''#!/usr/bin/env python3
import http.server, json, os, threading
posts = []
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def setup(self):
        super().setup(); self.count = 0; self.drop = False
    def do_GET(self):
        self.respond()
    def do_POST(self):
        posts.append(self.path)
        self.respond()
    def respond(self):
        if self.drop:
            self.close_connection = True
            return
        self.count += 1
        if self.path == "/drop-next":
            self.drop = True
        body = json.dumps({"port": self.client_address[1], "count": self.count, "posts": len(posts)}).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body)))
        if self.path == "/close":
            self.send_header("Connection", "close")
        self.end_headers(); self.wfile.write(body)
        if self.path == "/stray":  # a second, unasked response on the same connection a moment later
            self.wfile.flush()
            threading.Timer(0.3, self.stray).start()
    def stray(self):
        try:
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray"); self.wfile.flush()
        except OSError:
            pass
    def log_message(self, *args): pass
print("serving", flush=True)
http.server.ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Handler).serve_forever()
'''


@pytest.fixture(scope="module")
def keepalive_endpoint(front_backend):
    return deploy_endpoint(front_backend, "keepalivews", serve=KEEPALIVE_SERVE)


def get(backend, endpoint, path, method="GET"):
    # a new client connection each time: only the front's own connection to the endpoint can carry them all
    return requests.request(method, f"http://127.0.0.1:{backend.port}/{endpoint}{path}", timeout=20,
                            headers={"Connection": "close"})


def test_sequential_requests_reuse_one_upstream_connection(front_backend, keepalive_endpoint):
    answers = [get(front_backend, keepalive_endpoint, "/conn").json() for _ in range(5)]
    assert len({answer["port"] for answer in answers}) == 1, answers
    assert [answer["count"] for answer in answers] == sorted(answer["count"] for answer in answers)
    assert answers[-1]["count"] - answers[0]["count"] == 4


def test_a_connection_the_server_closes_is_not_reused(front_backend, keepalive_endpoint):
    closed = get(front_backend, keepalive_endpoint, "/close").json()
    after = get(front_backend, keepalive_endpoint, "/conn").json()
    assert after["port"] != closed["port"]


def test_a_get_on_a_pooled_connection_closed_unanswered_is_retried(front_backend, keepalive_endpoint):
    marked = get(front_backend, keepalive_endpoint, "/drop-next").json()
    answer = get(front_backend, keepalive_endpoint, "/conn")
    assert answer.status_code == 200, answer.text
    assert answer.json()["port"] != marked["port"]  # answered on a new connection


def test_a_post_on_a_pooled_connection_closed_unanswered_is_not_resent(front_backend, keepalive_endpoint):
    marked = get(front_backend, keepalive_endpoint, "/drop-next").json()
    answer = get(front_backend, keepalive_endpoint, "/predict", method="POST")
    assert answer.status_code == 502, answer.text
    assert answer.json()["error_code"] == "ENDPOINT_ERROR"
    seen = get(front_backend, keepalive_endpoint, "/conn").json()
    assert seen["posts"] == marked["posts"] + 1  # the dropped POST reached the server once, and only once


def test_pipelined_requests_reuse_one_upstream_connection(front_backend, keepalive_endpoint):
    """Eight requests in one write on one client connection: each goes on the connection the one before it came
    back on. The front told the client a response was done (and so started the next request) before it put the
    connection back in the pool: every other request opened a connection of its own."""
    get(front_backend, keepalive_endpoint, "/conn")  # a kept-alive connection in the pool, as for any request
    request = b"GET /%s/conn HTTP/1.1\r\nHost: kaos\r\n\r\n" % keepalive_endpoint.encode()
    received = b""
    with socket.create_connection(("127.0.0.1", front_backend.port), timeout=20) as sock:
        sock.sendall(request * 8)
        while express_fuzz._responses(received) < 8:
            piece = sock.recv(65536)
            if not piece:
                break
            received += piece
    ports = re.findall(rb'"port": (\d+)', received)
    assert len(ports) == 8 and len(set(ports)) == 1, received


@pytest.fixture(scope="module")
def stray_endpoint(front_backend):
    return deploy_endpoint(front_backend, "distrustws", serve=KEEPALIVE_SERVE)


def test_a_server_that_speaks_out_of_turn_is_not_pooled_again(front_backend, stray_endpoint):
    """Its stray response reaches no client, and its next requests each get a connection of their own: a late
    stray could otherwise arrive as a pooled connection carries the next request and be taken for its answer."""
    assert get(front_backend, stray_endpoint, "/stray").status_code == 200
    time.sleep(1)  # the stray comes while the connection waits in the pool
    answers = [get(front_backend, stray_endpoint, "/conn") for _ in range(3)]
    assert all(answer.status_code == 200 and answer.json()["count"] == 1 for answer in answers), [
        answer.text for answer in answers]
    assert len({answer.json()["port"] for answer in answers}) == 3


def test_a_connection_carries_at_most_upstream_keepalive_requests_responses(front_backend, keepalive_endpoint):
    """After 100 responses (KAOS_FRONT_UPSTREAM_KEEPALIVE_REQUESTS) the front closes its connection to the endpoint
    and the next request goes on a new one: a gunicorn endpoint whose connections a burst dealt all to one worker
    gets them dealt again."""
    with requests.Session() as session:
        answers = [session.get(f"http://127.0.0.1:{front_backend.port}/{keepalive_endpoint}/conn", timeout=20).json()
                   for _ in range(250)]
    assert max(answer["count"] for answer in answers) <= 100, answers
    ports = [answer["port"] for answer in answers]
    changes = sum(1 for before, after in zip(ports, ports[1:]) if before != after)
    assert 2 <= changes <= 3, ports  # every 100th response at the most (the first connection may have served some)
