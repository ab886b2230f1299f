"""The serving gateway: `/serve-<ws>-<hex6>/<path>` proxied to the endpoint's own server (WSGI middleware in
front of the Flask API, as the original's Ambassador stood in front of its backend).

Requests and responses are streamed both ways; small request bodies are buffered so that a request can be
retried once on a fresh connection when a kept-alive one turns out to be closed. Endpoint addresses are
looked up in SQL and cached for a second per process.

The upstream side speaks HTTP/1.1 over a plain socket rather than through http.client: every prediction pays
for this hop, and http.client's header parsing (the email package), its separate sends of head and body and
its per-call buffering cost more than the rest of the proxy together (bench/gateway.py measures it).
"""
import functools
import http.client
import json
import re
import socket
import threading
import time
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Tuple
from urllib.parse import quote

from kaos_model import PipelineState

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
              "transfer-encoding", "upgrade", "host"}
BUFFER_LIMIT = 1024 * 1024
CHUNK = 64 * 1024
CACHE_SECONDS = 1.0
UPSTREAM_TIMEOUT = 60.0
MAX_HEAD = 64 * 1024          # an endpoint's status line and headers
MAX_LINE = 64 * 1024          # a chunk-size line or a trailer
PATH_SAFE = "/:@!$&'()*+,;=~"  # what stays as it is when PATH_INFO (decoded) is quoted again
RETRYABLE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
_HEAD_END = re.compile(rb"\r?\n\r?\n")

Address = Tuple[str, Optional[str], Optional[int]]  # (state, host, port)


def _json_error(start_response, status: str, code: str, message: str) -> Iterable[bytes]:
    body = json.dumps({"error_code": code, "message": message}).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


class Gateway:
    """`Gateway(app, lookup)`: `lookup(name)` gives an endpoint's (state, host, port), or None when unknown."""

    def __init__(self, app: Callable, lookup: Callable[[str], Optional[Address]], prefixes=("serve-",)):
        self.app = app
        self.lookup = lookup
        self.prefixes = tuple("/" + prefix for prefix in prefixes)
        self._cache: Dict[str, Tuple[float, Optional[Address]]] = {}
        self._local = threading.local()

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if not path.startswith(self.prefixes):
            return self.app(environ, start_response)
        name, _, rest = path[1:].partition("/")
        address = self._address(name)
        if address is None:
            return _json_error(start_response, "404 NOT FOUND", "PIPELINE_NOT_FOUND", f"Pipeline {name} not found")
        state, host, port = address
        if port is None:
            return self._unavailable(start_response, name, state)
        return self._proxy(environ, start_response, name, state, host, port, "/" + rest)

    def _address(self, name: str) -> Optional[Address]:
        cached = self._cache.get(name)
        if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
        address = self.lookup(name)
        self._cache[name] = (time.monotonic(), address)
        return address

    @staticmethod
    def _unavailable(start_response, name: str, state: str):
        return _json_error(start_response, "503 SERVICE UNAVAILABLE", "ENDPOINT_UNAVAILABLE",
                           f"Endpoint {name} is not accepting connections ({state}): "
                           f"see kaos serve logs -e {name}")

    def _upstream(self, host: str, port: int) -> Tuple["_Upstream", bool]:
        """This thread's kept-alive connection to (host, port), taken out of the pool (reused = True), or a new
        one. Only a reused connection may be retried: a new one that breaks means the endpoint broke."""
        pool = self._local.__dict__.setdefault("pool", {})
        upstream = pool.pop((host, port), None)
        return (upstream, True) if upstream is not None else (_Upstream.connect(host, port), False)

    def _release(self, upstream: "_Upstream", response: "_Response", host: str, port: int) -> None:
        """A response read to its end: keep the connection for the next request, unless it cannot be reused."""
        if response.will_close or upstream.buffer:
            upstream.close()
            return
        previous = self._local.__dict__.setdefault("pool", {}).get((host, port))
        if previous is not None:
            previous.close()
        self._local.pool[(host, port)] = upstream

    def _proxy(self, environ, start_response, name, state, host, port, path):
        method = environ["REQUEST_METHOD"]
        raw = environ.get("RAW_URI", "")  # gunicorn's request target as sent: %2F stays %2F
        if raw.startswith(f"/{name}/"):
            target = raw[len(name) + 1:]
        else:
            query = environ.get("QUERY_STRING")
            target = quote(path.encode("latin-1"), safe=PATH_SAFE) + ("?" + query if query else "")
        head = [f"{method} {target} HTTP/1.1", f"Host: {host}:{port}"]
        for key, value in environ.items():
            if key.startswith("HTTP_"):
                header = key[5:].replace("_", "-")
                if header.lower() not in HOP_BY_HOP:
                    head.append(f"{header.title()}: {value}")
        if environ.get("CONTENT_TYPE"):
            head.append(f"Content-Type: {environ['CONTENT_TYPE']}")
        length = environ.get("CONTENT_LENGTH")
        length = int(length) if length and length.isdigit() else None
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        stream = environ["wsgi.input"]
        body = None
        if chunked:
            head.append("Transfer-Encoding: chunked")
        elif length is None:
            body = b""  # neither length nor chunked: a request without a body (RFC 9112 6.3)
        elif length <= BUFFER_LIMIT:
            body = stream.read(length) if length else b""
            head.append(f"Content-Length: {len(body)}")
        else:
            head.append(f"Content-Length: {length}")
        request_head = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        attempts = 2 if body is not None else 1
        for attempt in range(attempts):
            upstream, reused = None, False
            try:
                upstream, reused = self._upstream(host, port)
                if body is not None:
                    upstream.sock.sendall(request_head + body)  # one send: one segment, one read upstream
                else:
                    upstream.sock.sendall(request_head)
                    if length is not None:
                        _send_stream(upstream.sock, stream, length)
                    else:
                        _send_chunked(upstream.sock, stream)
                response = upstream.read_response(method)
                if response.length is not None and response.length <= CHUNK:
                    upstream.fill_to(response.length)  # the usual small answer, often in a second segment
                break
            except ConnectionRefusedError:
                if upstream is not None:
                    upstream.close()
                self._cache.pop(name, None)
                current = self._address(name)  # killed a moment ago? then the route is gone, not unavailable
                if current is None:
                    return _json_error(start_response, "404 NOT FOUND", "PIPELINE_NOT_FOUND",
                                       f"Pipeline {name} not found")
                return self._unavailable(start_response, name, current[0])
            except (http.client.HTTPException, OSError) as error:
                if upstream is not None:
                    upstream.close()
                if reused and attempt + 1 < attempts and isinstance(error, RETRYABLE):
                    continue  # a kept-alive connection the server had closed: not a failure of the request
                return _json_error(start_response, "502 BAD GATEWAY", "ENDPOINT_ERROR",
                                   f"Endpoint {name} broke off the request ({type(error).__name__}): "
                                   f"see kaos serve logs -e {name}")
        start_response(f"{response.status} {response.reason}", response.headers)
        if response.length is not None and len(upstream.buffer) >= response.length:  # the usual small answer
            data = bytes(upstream.buffer[:response.length])
            del upstream.buffer[:response.length]
            self._release(upstream, response, host, port)
            return [data] if data else []
        return self._relay(upstream, response, host, port)

    def _relay(self, upstream: "_Upstream", response: "_Response", host: str, port: int) -> Iterator[bytes]:
        complete = False
        try:
            if response.chunked:
                yield from upstream.chunked_body()
            elif response.length is not None:
                yield from upstream.sized_body(response.length)
            else:
                yield from upstream.body_until_close()
            complete = True
        except (http.client.HTTPException, OSError):
            return  # the endpoint broke off: the client sees the body end early
        finally:
            if complete:
                self._release(upstream, response, host, port)
            else:
                upstream.close()


class _Response:
    """Status line and headers of an endpoint's answer, and how its body is delimited."""
    __slots__ = ("status", "reason", "headers", "length", "chunked", "will_close")

    def __init__(self, status: int, reason: str, headers: List[Tuple[str, str]], length: Optional[int],
                 chunked: bool, will_close: bool):
        self.status, self.reason, self.headers = status, reason, headers
        self.length, self.chunked, self.will_close = length, chunked, will_close


class _Upstream:
    """One HTTP/1.1 connection to an endpoint's server, with the bytes read past the current message."""
    __slots__ = ("sock", "buffer")

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buffer = bytearray()

    @classmethod
    def connect(cls, host: str, port: int) -> "_Upstream":
        family = _address_family(host)
        if family is None:
            sock = socket.create_connection((host, port), timeout=UPSTREAM_TIMEOUT)
        else:  # an IP address, as the executors give: no resolver call on every request
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.settimeout(UPSTREAM_TIMEOUT)
                sock.connect((host, port))
            except BaseException:
                sock.close()
                raise
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        return cls(sock)

    def close(self) -> None:
        self.sock.close()

    def _fill(self) -> bool:
        data = self.sock.recv(CHUNK)
        self.buffer += data
        return bool(data)

    def read_response(self, method: str) -> _Response:
        """Status line and headers (interim 1xx answers skipped); the body stays to be read."""
        while True:
            status, reason, version, headers = self._read_head()
            if status < 100 or status > 199 or status == 101:
                break
        connection, length, chunked, out = set(), None, False, []
        for key, value in headers:
            lower = key.lower()
            if lower == "connection":
                connection.update(token.strip().lower() for token in value.split(","))
            elif lower == "transfer-encoding":
                chunked = chunked or "chunked" in value.lower()
            elif lower == "content-length" and length is None:
                length = int(value) if value.isdigit() else -1
            if lower not in HOP_BY_HOP:
                out.append((key, value))
        if length is not None and length < 0:
            length = None  # unreadable: the body ends when the endpoint closes the connection
        if chunked:  # the body is relayed de-chunked: a Content-Length beside it would not hold
            length = None
            out = [(key, value) for key, value in out if key.lower() != "content-length"]
        if method == "HEAD" or status in (204, 304) or status < 200:
            length, chunked = 0, False
        will_close = ("close" in connection or (version == "HTTP/1.0" and "keep-alive" not in connection)
                      or (length is None and not chunked))
        return _Response(status, reason, out, length, chunked, will_close)

    def _read_head(self) -> Tuple[int, str, str, List[Tuple[str, str]]]:
        start = 0
        while True:
            end = _HEAD_END.search(self.buffer, start)
            if end is not None:
                break
            if len(self.buffer) > MAX_HEAD:
                raise http.client.LineTooLong("header line")
            start = max(0, len(self.buffer) - 3)
            if not self._fill():
                if self.buffer:
                    raise http.client.IncompleteRead(bytes(self.buffer))
                raise http.client.RemoteDisconnected("Remote end closed connection without response")
        lines = self.buffer[:end.start()].decode("latin-1").split("\n")
        del self.buffer[:end.end()]
        status_line = lines[0].strip()
        version, _, rest = status_line.partition(" ")
        code, _, reason = rest.strip().partition(" ")
        if not version.startswith("HTTP/") or len(code) != 3 or not code.isdigit() or code[0] == "0":
            raise http.client.BadStatusLine(status_line)
        headers: List[Tuple[str, str]] = []
        for line in lines[1:]:
            if line[:1] in (" ", "\t") and headers:  # an obsolete folded continuation line
                key, value = headers[-1]
                headers[-1] = (key, f"{value} {line.strip()}")
                continue
            key, colon, value = line.partition(":")
            if colon:
                headers.append((key.strip(), value.strip()))
        return int(code), reason.strip(), version, headers

    def fill_to(self, size: int) -> None:
        while len(self.buffer) < size:
            if not self._fill():
                raise http.client.IncompleteRead(bytes(self.buffer), size - len(self.buffer))

    def _take(self, limit: int) -> bytes:
        """Up to `limit` bytes of the body: what is buffered, else what one read gives."""
        if self.buffer:
            data = bytes(self.buffer[:limit])
            del self.buffer[:limit]
            return data
        data = self.sock.recv(min(CHUNK, limit))
        if not data:
            raise http.client.IncompleteRead(b"")
        return data

    def _line(self) -> bytes:
        while True:
            end = self.buffer.find(b"\n")
            if end >= 0:
                line = bytes(self.buffer[:end + 1])
                del self.buffer[:end + 1]
                return line
            if len(self.buffer) > MAX_LINE:
                raise http.client.LineTooLong("chunk size")
            if not self._fill():
                raise http.client.IncompleteRead(bytes(self.buffer))

    def sized_body(self, length: int) -> Iterator[bytes]:
        remaining = length
        while remaining > 0:
            data = self._take(remaining)
            remaining -= len(data)
            yield data

    def body_until_close(self) -> Iterator[bytes]:
        if self.buffer:
            data = bytes(self.buffer)
            self.buffer.clear()
            yield data
        while True:
            data = self.sock.recv(CHUNK)
            if not data:
                return
            yield data

    def chunked_body(self) -> Iterator[bytes]:
        while True:
            size_text = self._line().split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise http.client.IncompleteRead(b"") from None
            if size == 0:
                while self._line().strip():  # trailers, up to the empty line
                    pass
                return
            yield from self.sized_body(size)
            if self._line().strip():
                raise http.client.IncompleteRead(b"")


@functools.lru_cache(maxsize=256)
def _address_family(host: str) -> Optional[int]:
    """AF_INET or AF_INET6 for an IP address, None for a name to resolve."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
            return family
        except OSError:
            continue
    return None


def _send_stream(sock: socket.socket, stream, length: int) -> None:
    remaining = length
    while remaining > 0:
        chunk = stream.read(min(CHUNK, remaining))
        if not chunk:
            break
        sock.sendall(chunk)
        remaining -= len(chunk)


def _send_chunked(sock: socket.socket, stream) -> None:
    while True:
        chunk = stream.read(CHUNK)
        if not chunk:
            break
        sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    sock.sendall(b"0\r\n\r\n")


def endpoint_lookup(services) -> Callable[[str], Optional[Address]]:
    """`lookup(name)` over SQL: (state, host, port) for a live endpoint, port None while it does not run."""
    from kaos_backend.models import Endpoint

    def lookup(name: str) -> Optional[Address]:
        with services.db.session_scope() as session:
            endpoint = session.get(Endpoint, name)
            if endpoint is None or endpoint.desired == "kill":
                return None
            running = endpoint.state == PipelineState.PIPELINE_RUNNING.value and endpoint.port
            return endpoint.state, "127.0.0.1", endpoint.port if running else None
    return lookup
