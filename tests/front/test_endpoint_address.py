"""The front reaches an endpoint at the address its row holds (host, port, socket: what the executor's start()
returned), never at an address it assumes."""
import asyncio
import http.server
import socket
import threading

import requests

from kaos_backend.db import Database
from kaos_backend.front import Front
from kaos_backend.front.endpoints import endpoint_lookup
from kaos_backend.models import Endpoint, Workspace

NAME = "serve-ws-abcdef"
HOST = "127.0.0.2"  # loopback too on Linux, but not the 127.0.0.1 an executor's workload used to be assumed at


class Which(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"{self.server.server_address[0]} {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_the_front_reaches_an_endpoint_at_the_host_and_port_of_its_row(tmp_path):
    server = http.server.ThreadingHTTPServer((HOST, 0), Which)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"sqlite:///{tmp_path / 'kaos.db'}"
    database = Database(url)
    with database.session_scope() as session:
        session.add(Workspace(id=1, name="ws", user="u"))
        session.flush()
        session.add(Endpoint(name=NAME, workspace_id=1, user="u", state="PIPELINE_RUNNING", host=HOST,
                             port=server.server_address[1]))
    database.dispose()
    lookup = endpoint_lookup(url)
    assert lookup(NAME) == ("PIPELINE_RUNNING", HOST, server.server_address[1], None)

    listener = socket.create_server(("127.0.0.1", 0))
    loop = asyncio.new_event_loop()
    front = Front(loop, ("127.0.0.1", 1), lookup)
    task = loop.create_task(front.serve(listener))
    thread = threading.Thread(target=lambda: loop.run_until_complete(asyncio.wait([task])), daemon=True)
    thread.start()
    try:
        answer = requests.get(f"http://127.0.0.1:{listener.getsockname()[1]}/{NAME}/invocations", timeout=30)
        assert (answer.status_code, answer.text) == (200, f"{HOST} /invocations")
    finally:
        loop.call_soon_threadsafe(task.cancel)
        thread.join(timeout=10)
        server.shutdown()
        server.server_close()
