"""The world of the express lane's fuzzer (express_fuzz.py): a front in process (FuzzFront, on asyncio's loop or
uvloop's) whose one workload is a ScriptedEndpoint, a keep-alive HTTP/1.1 server on a unix socket that answers each
request it reads with the next script of its plan, and the bounds both fronts share (CONFIG: small, so that
timeouts and limits are reached in a test)."""
import asyncio
import os
import socket
import threading
import time
from typing import Callable, List

from kaos_backend.front.config import FrontConfig
from kaos_backend.front.server import Front

NAME = b"serve-ws-aaaaaa"
HANDOFF = b"X-Fuzz-Handoff"      # a hand-off header name: never from an endpoint, never to one
CLOSE, RESET = "close", "reset"  # script steps that end the endpoint's connection (FIN, or RST)
HOLD = 0.05                      # the fronts' head_hold_seconds
READ_TIMEOUT = 1.0               # their proxy_read_timeout: a stall is well past it, a pause well within
STALL = 2.2
MAX_BODY = 1024 * 1024           # serve_max_body_mb=1
CONFIG = dict(head_hold_seconds=HOLD, body_hold_seconds=HOLD, proxy_read_timeout=READ_TIMEOUT, serve_max_body_mb=1,
              max_headers=20, max_head_bytes=4096, max_header_field_bytes=1024, max_target_bytes=512,
              endpoint_cache_seconds=600, upstream_keepalive_timeout=60, client_header_timeout=10,
              client_body_timeout=10)


def plain(body: bytes = b'{"ok": true}') -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


class ScriptedEndpoint:
    """A keep-alive HTTP/1.1 server on a unix socket. Each request it reads (head, then a Content-Length body: the
    front frames every body so) is recorded, then answered by the next script of `plan` (a plain 200 once the
    plan is used up). `accepted` counts its connections; bytes left unparsed when a connection ends are
    recorded as ("partial", bytes)."""

    def __init__(self, path: str):
        self.path = path
        self.plan: List[list] = []
        self.requests: List[object] = []
        self.accepted = 0
        self.open: set = set()
        self.lock = threading.Lock()
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(path)
        self.server.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            with self.lock:
                self.accepted += 1
                self.open.add(connection)
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _next_script(self) -> list:
        with self.lock:
            return self.plan.pop(0) if self.plan else [plain()]

    def _serve(self, connection: socket.socket):
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = connection.recv(65536)
                    if not data:
                        if buffer:
                            self.requests.append(("partial", buffer))
                        return
                    buffer += data
                head, _, rest = buffer.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(rest) < length:
                    data = connection.recv(65536)
                    if not data:
                        self.requests.append(("partial", head + b"\r\n\r\n" + rest))
                        return
                    rest += data
                self.requests.append(head + b"\r\n\r\n" + rest[:length])
                buffer = rest[length:]
                for step in self._next_script():
                    if isinstance(step, (int, float)):
                        time.sleep(step)
                    elif step == CLOSE:
                        return
                    elif step == RESET:
                        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                        return
                    else:
                        connection.sendall(step)
        except OSError:
            return
        finally:
            with self.lock:
                self.open.discard(connection)
            connection.close()

    def drop_all(self) -> None:
        """End every open connection (a script still sleeping on one fails when it next writes)."""
        with self.lock:
            connections, self.plan = list(self.open), []
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.server.close()


class FuzzFront:
    """A Front on 127.0.0.1 in a thread of its own, its workload NAME at a ScriptedEndpoint; `errors` collects what
    reaches the loop's exception handler (a bug: nothing may)."""

    def __init__(self, directory: str, lane: bool, uvloop: bool = False, **config):
        self.endpoint = ScriptedEndpoint(os.path.join(directory, f"endpoint-{int(lane)}.sock"))
        self.config = FrontConfig(**{**CONFIG, **config, "express": lane})
        address = ("PIPELINE_RUNNING", "127.0.0.1", 8080, self.endpoint.path)
        if uvloop:
            import uvloop as module
            self.loop = module.new_event_loop()
        else:
            self.loop = asyncio.new_event_loop()
        self.errors: List[dict] = []
        self.loop.set_exception_handler(lambda loop, context: self.errors.append(context))
        self.front = Front(self.loop, "/nonexistent/api.sock", {NAME.decode(): address}.get, self.config)
        listener = socket.create_server(("127.0.0.1", 0))
        self.port = listener.getsockname()[1]
        self.task = self.loop.create_task(self.front.serve(listener))
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            self.loop.run_until_complete(self.task)
        except asyncio.CancelledError:
            pass

    def call(self, function: Callable[[], object], timeout: float = 5):
        """`function()` run on the front's loop; its result."""
        async def run():
            return function()
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=timeout)

    def state(self) -> dict:
        """What must be back to its baseline once a case's client is gone."""
        def read():
            pool = self.front.pool
            return {"clients": len(self.front.clients), "holds": len(self.front.holds.waiting),
                    "body holds": len(self.front.body_holds.waiting),
                    "pool": pool.count, "pool entries": sum(len(queue) for queue in pool.idle.values())}
        return self.call(read)

    def settle(self, timeout: float = 4) -> dict:
        """Wait until no client connection is open (the case's client closed) and no request head is held for its
        body (a gone client's hold runs out within the body hold); the state then."""
        deadline = time.monotonic() + timeout
        state = self.state()
        while (state["clients"] or state["body holds"]) and time.monotonic() < deadline:
            time.sleep(0.02)
            state = self.state()
        return state

    def trust_again(self):
        self.call(self.front.pool.distrusted.clear)

    def stop(self):
        self.loop.call_soon_threadsafe(self.task.cancel)
        self.thread.join(timeout=5)
        self.endpoint.close()
