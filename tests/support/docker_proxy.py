"""A unix socket of a test's own in front of the Docker engine's: stopping it is "the engine stopped answering" for
the platform that reaches the engine through it alone, without touching the engine other tests and developers
share (tests/docker/test_attack_findings.py, tests/docker/test_engine_hangs.py)."""
import os
import shutil
import socket
import tempfile
import threading
import time
from typing import Optional, Set

import pytest


def _engine_socket() -> str:
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if not host.startswith("unix://"):
        pytest.skip(f"the engine is not on a unix socket ({host}): EngineProxy cannot stand in front of it")
    return host[len("unix://"):]


class EngineProxy:
    """A unix socket whose connections are passed on, byte for byte, to the engine's socket. `stop()` closes it and
    every connection through it (the engine stops answering, as when dockerd stops); `start()` opens it again.
    With `refuse_removals`, a request to remove a container (`DELETE /.../containers/...`) is answered by closing
    its connection (as an engine that goes away just then), counted in `refused`. With `hang_creates`, a request
    to create a container (`POST /.../containers/create`) is read and never answered (as an engine stuck on it),
    counted in `hung`; its connection is closed once `hang_creates` is cleared (or the proxy stops). With
    `hang_matching` (bytes), so is every request whose request line has those bytes (a container's id: a container
    whose stop, kill and removal the engine never answers, its process stuck in the kernel); with `release_after`
    (seconds), such a connection is closed that long after (a timeout, cut short). With `lose_answers` (bytes), a
    request whose request line has those bytes is passed on and its answer lost (the engine did it, and its
    answer never came): its connection is closed once the engine answers, counted in `lost`."""

    def __init__(self):
        self.directory = tempfile.mkdtemp(prefix="kaos-engine-proxy-", dir="/tmp")  # a unix socket path is short
        self.path = os.path.join(self.directory, "docker.sock")
        self.target = _engine_socket()
        self.refuse_removals = False
        self.refused = 0
        self.hang_creates = False
        self.hang_matching: Optional[bytes] = None
        self.release_after: Optional[float] = None
        self.lose_answers: Optional[bytes] = None
        self._muted: Set[socket.socket] = set()   # the engine's ends whose answers are lost
        self.lost = 0   # answers lost
        self.hung = 0
        self._listener: Optional[socket.socket] = None
        self._open: Set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def docker_host(self) -> str:
        return f"unix://{self.path}"

    def start(self) -> "EngineProxy":
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.path)
        listener.listen(128)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        if os.path.exists(self.path):
            os.unlink(self.path)
        with self._lock:
            for sock in list(self._open):
                _close(sock)
            self._open.clear()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(self.target)
        except OSError:
            _close(client)
            return
        with self._lock:
            self._open.update((client, upstream))
        threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()
        self._pump(client, upstream, True)

    def _pump(self, source: socket.socket, sink: socket.socket, requests: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if requests and self.refuse_removals and _removes_a_container(data):
                    self.refused += 1
                    break
                if requests and self._hangs(data):
                    self._hold(lambda: self._hangs(data))
                    break
                if requests and _matches(self.lose_answers, data):
                    with self._lock:
                        self._muted.add(sink)   # the rest of the request (its body) passed on as it comes
                if not requests and source in self._muted:
                    self.lost += 1
                    break  # the answer lost: the connection closed
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                _close(sock)
                with self._lock:
                    self._open.discard(sock)
                    self._muted.discard(sock)

    def _hangs(self, data: bytes) -> bool:
        return (self.hang_creates and _creates_a_container(data)) or _matches(self.hang_matching, data)

    def _hold(self, still) -> None:
        """A request hung (counted in `hung`) while `still()`, the proxy runs, and `release_after` has not passed."""
        self.hung += 1
        until = time.monotonic() + self.release_after if self.release_after is not None else None
        while still() and self._listener is not None and (until is None or time.monotonic() < until):
            time.sleep(0.1)


def _matches(matching: Optional[bytes], data: bytes) -> bool:
    return matching is not None and matching in data.split(b"\r\n", 1)[0]


def _removes_a_container(data: bytes) -> bool:
    request_line = data.split(b"\r\n", 1)[0]
    return request_line.startswith(b"DELETE ") and b"/containers/" in request_line


def _creates_a_container(data: bytes) -> bool:
    request_line = data.split(b"\r\n", 1)[0]
    return request_line.startswith(b"POST ") and b"/containers/create" in request_line


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
