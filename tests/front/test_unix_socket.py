"""Endpoints on the local executor may listen on the unix socket they are offered (KAOS_SOCKET): the front then
reaches them there; a bundle that ignores it is reached over TCP; the socket goes when the endpoint is killed."""
import os
import time

import requests

from tests.front.support import deploy_endpoint

WAIT_LIMIT = 60.0  # a bound against hanging, never a speed claim

# Answers every GET with how it received the request ("unix" or "tcp"), the socket it was offered and its port.
# It listens on $HOST:$PORT always and, when LISTEN_UNIX, on $KAOS_SOCKET too (as the templates' serve does).
SERVE = r'''#!/usr/bin/env python3
import http.server, json, os, socketserver, threading
LISTEN_UNIX = %s
OFFERED = os.environ.get("KAOS_SOCKET")
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        via = "unix" if isinstance(self.server, socketserver.UnixStreamServer) else "tcp"
        out = json.dumps({"via": via, "offered": OFFERED, "port": os.environ["PORT"]}).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(out))); self.end_headers()
        self.wfile.write(out)
    def log_message(self, *args):
        pass
class Unix(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
tcp = http.server.ThreadingHTTPServer((os.environ.get("HOST", "127.0.0.1"), int(os.environ["PORT"])), Handler)
if LISTEN_UNIX and OFFERED:
    threading.Thread(target=Unix(OFFERED, Handler).serve_forever, daemon=True).start()
tcp.serve_forever()
'''


def _through_front(backend, name):
    answer = requests.get(f"http://127.0.0.1:{backend.port}/{name}/which", timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _wait_for(predicate):
    deadline = time.monotonic() + WAIT_LIMIT
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_an_endpoint_that_binds_its_socket_is_reached_through_it_and_the_socket_goes_when_killed(front_backend):
    name = deploy_endpoint(front_backend, "unixws", serve=SERVE % "True")
    seen = _through_front(front_backend, name)
    offered = seen["offered"]
    assert offered and len(offered.encode()) < 108 and os.path.exists(offered)
    for _ in range(5):  # every request of a running endpoint, not only the first
        assert _through_front(front_backend, name)["via"] == "unix"
    direct = requests.get(f"http://127.0.0.1:{seen['port']}/which", timeout=30).json()
    assert direct["via"] == "tcp"  # its port still answers: the direct address of `kaos serve` keeps working

    killed = requests.delete(front_backend.url + f"inference/unixws/{name}", headers={"X-Token": front_backend.token},
                             timeout=60)
    assert killed.ok, killed.text
    _wait_for(lambda: not os.path.exists(os.path.dirname(offered)))
    gone = requests.get(f"http://127.0.0.1:{front_backend.port}/{name}/which", timeout=30)
    assert gone.status_code in (404, 503), gone.text


def test_a_bundle_that_ignores_the_socket_is_reached_over_tcp(front_backend):
    name = deploy_endpoint(front_backend, "tcpws", serve=SERVE % "False")
    seen = _through_front(front_backend, name)
    assert seen["offered"] and not os.path.exists(seen["offered"])  # offered one, made none
    assert seen["via"] == "tcp" and _through_front(front_backend, name)["via"] == "tcp"
