"""A TCP relay in front of the fake API server, for tests of a control plane that goes away while its node goes on
(a kube-apiserver restart or upgrade: the kubelet keeps running the pods, the clients lose their connections):

    relay = ApiServerRelay(cluster.http.port).start()   # relay.url: what a kubeconfig names instead of cluster.url
    relay.away()       # the API server is gone: its port refuses connections, every open connection is closed
    relay.away(clean=False)   # ... its open connections go silent and stay so (its host powered off, rebooted)
    relay.hang()       # it accepts connections and never answers (an overloaded or wedged API server)
    relay.hang_writes()   # it answers reads and never a create, update or delete (its etcd wedged)
    relay.lose_answers = b"/secrets"   # a write whose request line has those bytes is carried out, its answer
                                       # lost (its connection closed once the server answered, and once
                                       # `relay.lost_when()` holds, when set: a timeout cut short); counted in `lost`
    relay.back()       # it answers again (on the same port)
    relay.stop()

The pods, the store and the controllers of the fake go on meanwhile; only the API's clients are cut off."""
import socket
import struct
import threading
import time
from typing import Callable, List, Optional

from tests.support.ports import free_port


WRITES = (b"POST ", b"PUT ", b"PATCH ", b"DELETE ")
LOST_WAIT = 25.0  # seconds a lost answer's connection is held at most (within the client's 30 s read timeout)


class ApiServerRelay:
    def __init__(self, target_port: int, host: str = "127.0.0.1"):
        self.host, self.target_port = host, target_port
        self.port = free_port(host)
        self.mode = "up"
        self._lock = threading.Lock()
        self._listener: Optional[socket.socket] = None
        self._pairs: List[dict] = []   # {"sockets": [client, upstream or None], "silent": bool, "lose": bool}
        self.lose_answers: Optional[bytes] = None
        self.lost_when: Optional[Callable[[], bool]] = None
        self.lost = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "ApiServerRelay":
        self._listen()
        return self

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(128)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), name="kube-relay-accept", daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed: away, or stopped
            pair = {"sockets": [client], "silent": self.mode == "hang"}
            with self._lock:
                self._pairs.append(pair)
            if pair["silent"]:
                continue  # accepted, never answered
            try:
                upstream = socket.create_connection((self.host, self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            pair["sockets"].append(upstream)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(pair, source, sink), daemon=True,
                                 name="kube-relay-pump").start()

    def _pump(self, pair: dict, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if self.mode == "hang-writes" and source is pair["sockets"][0] and data.startswith(WRITES):
                    pair["silent"] = True  # this request, and the connection it came on, never answered
                if source is pair["sockets"][0] and self.lose_answers is not None and data.startswith(WRITES) \
                        and self.lose_answers in data.split(b"\r\n", 1)[0]:
                    pair["lose"] = True
                elif source is not pair["sockets"][0] and pair.get("lose"):
                    deadline = time.monotonic() + LOST_WAIT
                    while self.lost_when is not None and not self.lost_when() and time.monotonic() < deadline:
                        time.sleep(0.1)
                    self.lost += 1
                    break  # the answer lost: the connection closed
                if not pair["silent"]:
                    sink.sendall(data)
                elif source is pair["sockets"][0] and self.mode == "up":  # to a rebooted host: it answers RST
                    for end in pair["sockets"]:
                        end.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    pair["silent"] = False
                    break
                # else lost, as across a partition
        except OSError:
            pass
        finally:
            if not pair["silent"]:
                for end in (source, sink):
                    try:
                        end.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

    def _close(self, listener_too: bool = True, pairs=None) -> None:
        with self._lock:
            if pairs is None:
                pairs, self._pairs = self._pairs, []
            else:
                self._pairs = [pair for pair in self._pairs if pair not in pairs]
            listener = self._listener if listener_too else None
            if listener_too:
                self._listener = None
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)  # wakes the accept blocked on it (close alone would not)
            except OSError:
                pass
            listener.close()
        for pair in pairs:
            pair["silent"] = False
            for end in pair["sockets"]:
                try:
                    end.shutdown(socket.SHUT_RDWR)  # wakes the pump blocked on it; the peer reads the end
                    end.close()
                except OSError:
                    pass

    def away(self, clean: bool = True) -> None:
        """The API server is gone: its port refuses connections. `clean`: it closed its connections (a restart);
        else they go silent and stay so (a partition, a host powered off: the client sees nothing more)."""
        self.mode = "away"
        if clean:
            self._close()
            return
        with self._lock:
            for pair in self._pairs:
                pair["silent"] = True
        self._close(pairs=[])

    def hang(self) -> None:
        """It accepts connections and answers nothing on any connection, open or new."""
        self.mode = "hang"
        with self._lock:
            for pair in self._pairs:
                pair["silent"] = True

    def hang_writes(self) -> None:
        """It answers reads (GET /version, lists, watches) and never answers a write: an API server whose etcd
        is wedged serves what its watch cache has and no create, update or delete."""
        self.mode = "hang-writes"

    def back(self) -> None:
        """It answers again (a restarted server: the connections it held silent are closed)."""
        with self._lock:
            silent = [pair for pair in self._pairs if pair["silent"]]
        hung = self.mode in ("hang", "hang-writes")
        self._close(listener_too=self.mode == "hang", pairs=silent if hung else [])
        self.mode = "up"
        if self._listener is None:
            self._listen()

    def stop(self) -> None:
        self.mode = "away"
        self._close()
