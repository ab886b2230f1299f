"""The serving gateway: `/serve-<ws>-<hex6>/<path>` proxied to the endpoint's own server (WSGI middleware in
front of the Flask API, as the original's Ambassador stood in front of its backend).

Requests and responses are streamed both ways; small request bodies are buffered so that a request can be
retried once on a fresh connection when a kept-alive one turns out to be closed. Endpoint addresses are
looked up in SQL and cached for a second per process.
"""
import http.client
import json
import threading
import time
from typing import Callable, Dict, Iterable, Optional, Tuple

from kaos_model import PipelineState

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
              "transfer-encoding", "upgrade", "host"}
BUFFER_LIMIT = 1024 * 1024
CHUNK = 64 * 1024
CACHE_SECONDS = 1.0
UPSTREAM_TIMEOUT = 60.0

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

    def _connection(self, host: str, port: int, fresh: bool = False) -> http.client.HTTPConnection:
        pool = getattr(self._local, "pool", None)
        if pool is None:
            pool = self._local.pool = {}
        connection = pool.get((host, port))
        if connection is None or fresh:
            if connection is not None:
                connection.close()
            connection = pool[(host, port)] = http.client.HTTPConnection(host, port, timeout=UPSTREAM_TIMEOUT)
        return connection

    def _proxy(self, environ, start_response, name, state, host, port, path):
        query = environ.get("QUERY_STRING")
        target = path + ("?" + query if query else "")
        headers = [(key[5:].replace("_", "-").title(), value) for key, value in environ.items()
                   if key.startswith("HTTP_") and key[5:].replace("_", "-").lower() not in HOP_BY_HOP]
        if environ.get("CONTENT_TYPE"):
            headers.append(("Content-Type", environ["CONTENT_TYPE"]))
        length = environ.get("CONTENT_LENGTH")
        length = int(length) if length and length.isdigit() else None
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        stream = environ["wsgi.input"]
        body = None
        if length is not None and length <= BUFFER_LIMIT and not chunked:
            body = stream.read(length) if length else b""
        method = environ["REQUEST_METHOD"]
        attempts = 2 if body is not None else 1
        for attempt in range(attempts):
            connection = self._connection(host, port, fresh=attempt > 0)
            try:
                connection.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
                connection.putheader("Host", f"{host}:{port}")
                for key, value in headers:
                    connection.putheader(key, value)
                if body is not None:
                    connection.putheader("Content-Length", str(len(body)))
                    connection.endheaders(body)
                elif length is not None:
                    connection.putheader("Content-Length", str(length))
                    connection.endheaders()
                    _send_stream(connection, stream, length)
                else:
                    connection.putheader("Transfer-Encoding", "chunked")
                    connection.endheaders()
                    _send_chunked(connection, stream)
                response = connection.getresponse()
                break
            except ConnectionRefusedError:
                connection.close()
                self._cache.pop(name, None)
                current = self._address(name)  # killed a moment ago? then the route is gone, not unavailable
                if current is None:
                    return _json_error(start_response, "404 NOT FOUND", "PIPELINE_NOT_FOUND",
                                       f"Pipeline {name} not found")
                return self._unavailable(start_response, name, current[0])
            except (http.client.HTTPException, OSError) as error:
                connection.close()
                if attempt + 1 < attempts and isinstance(error, (http.client.RemoteDisconnected,
                                                                 ConnectionResetError, BrokenPipeError)):
                    continue
                return _json_error(start_response, "502 BAD GATEWAY", "ENDPOINT_ERROR",
                                   f"Endpoint {name} broke off the request ({type(error).__name__}): "
                                   f"see kaos serve logs -e {name}")
        out_headers = [(key, value) for key, value in response.getheaders() if key.lower() not in HOP_BY_HOP]
        start_response(f"{response.status} {response.reason}", out_headers)
        return _relay(response, connection)


def _send_stream(connection, stream, length: int) -> None:
    remaining = length
    while remaining > 0:
        chunk = stream.read(min(CHUNK, remaining))
        if not chunk:
            break
        connection.send(chunk)
        remaining -= len(chunk)


def _send_chunked(connection, stream) -> None:
    while True:
        chunk = stream.read(CHUNK)
        if not chunk:
            break
        connection.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    connection.send(b"0\r\n\r\n")


def _relay(response, connection):
    try:
        while True:
            chunk = response.read1(CHUNK) if hasattr(response, "read1") else response.read(CHUNK)
            if not chunk:
                break
            yield chunk
    except (http.client.HTTPException, OSError):
        connection.close()
        return
    finally:
        if response.will_close:
            connection.close()


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
