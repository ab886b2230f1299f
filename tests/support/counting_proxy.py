"""A TCP proxy on 127.0.0.1 that counts the bytes each way: put it between the CLI and a backend to measure what
a command sends on the wire (request lines, headers and bodies alike)."""
import socket
import threading
from typing import List

CHUNK = 256 * 1024


class CountingProxy:
    """Forwards every connection made to `url`'s port to `target_port` on 127.0.0.1; `sent` counts the bytes
    clients sent (toward the backend), `received` the bytes they got back."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1"):
        self.target = (target_host, target_port)
        self.sent = 0
        self.received = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: List[socket.socket] = []
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def start(self) -> "CountingProxy":
        self._thread.start()
        return self

    def reset(self) -> None:
        with self._lock:
            self.sent = self.received = 0

    def stop(self) -> None:
        self._closed = True
        self._listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            try:
                sock.close()
            except OSError:
                pass

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            pumps = [threading.Thread(target=self._pump, args=(client, upstream, "sent"), daemon=True),
                     threading.Thread(target=self._pump, args=(upstream, client, "received"), daemon=True)]
            for pump in pumps:
                pump.start()
            threading.Thread(target=self._close_after, args=(pumps, client, upstream), daemon=True).start()

    def _close_after(self, pumps, *sockets: socket.socket) -> None:
        for pump in pumps:
            pump.join()
        with self._lock:
            self._sockets = [sock for sock in self._sockets if sock not in sockets]
        for sock in sockets:
            sock.close()

    def _pump(self, source: socket.socket, target: socket.socket, counter: str) -> None:
        try:
            while True:
                data = source.recv(CHUNK)
                if not data:
                    break
                with self._lock:
                    setattr(self, counter, getattr(self, counter) + len(data))
                target.sendall(data)
        except OSError:
            pass
        finally:
            try:
                target.shutdown(socket.SHUT_WR)
            except OSError:
                pass
