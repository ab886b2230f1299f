"""The front door's bounds, in one object, with defaults close to nginx's; each is overridable by an environment
variable `KAOS_FRONT_<FIELD>` (upper case), e.g. `KAOS_FRONT_CLIENT_HEADER_TIMEOUT=10`.

Times are seconds, sizes bytes (the `*_mb` fields are MiB). The API's body limit is not here: it is the API's
upload limit (`KAOS_MAX_UPLOAD_MB`, kaos_backend.config) plus its multipart slack, so the front refuses what the
API would refuse, before a byte of it reaches a worker.
"""
import math
import os
import resource
from dataclasses import dataclass, fields, replace
from typing import Mapping, Optional

MB = 1024 * 1024
ENV_PREFIX = "KAOS_FRONT_"


class FrontConfigError(ValueError):
    """A `KAOS_FRONT_*` variable that is not a finite number, or is below its minimum."""


@dataclass(frozen=True)
class FrontConfig:
    # client side (nginx: client_header_timeout, keepalive_timeout, client_body_timeout, send_timeout)
    client_header_timeout: float = 60.0   # from a request's first byte to its whole head -> 408
    keepalive_timeout: float = 75.0       # idle between requests -> the connection is closed
    client_body_timeout: float = 60.0     # between two reads of a request body -> 408
    client_body_min_rate: float = 1024.0  # bytes a second a body must average after its first timeout -> 408
    send_timeout: float = 60.0            # a client that reads nothing of its response this long is dropped
    # upstream side (nginx: proxy_connect_timeout, proxy_read_timeout)
    proxy_connect_timeout: float = 60.0   # connecting to an endpoint or the API -> 502
    proxy_read_timeout: float = 60.0      # waiting for the response head (-> 504), then between body reads
    upstream_keepalive: int = 32          # idle kept-alive connections to one endpoint (nginx: keepalive)
    upstream_keepalive_total: int = 512   # ... and to all endpoints together
    upstream_keepalive_timeout: float = 1.5  # an idle one is closed after this (below gunicorn's own 2 s)
    # a connection is closed after this many responses (nginx: keepalive_requests), so that an endpoint whose
    # workers each accept from one listener (gunicorn's) gets its connections dealt again now and then: one worker
    # that took them all in a burst would otherwise serve every request on one core while the others wait
    upstream_keepalive_requests: int = 100
    tunnel_idle_timeout: float = 300.0    # an upgraded (WebSocket) connection with no byte either way is closed
    api_start_timeout: float = 10.0       # a request waits this long for the API's socket while it (re)starts
    # a response head waits this long for its body's first bytes, to go out with them in one write (nginx:
    # postpone_output); a body that comes later follows on its own
    head_hold_seconds: float = 0.005
    # a request head the express lane read whole waits this long for the rest of its body (clients such as Python's
    # http.client send head and body in two writes); a body that comes later goes the general way, whose body
    # timers start then
    body_hold_seconds: float = 0.05
    # the express lane (express.py) for the common request to a workload; 0 sends every request the general way
    express: bool = True
    # sizes (nginx: large_client_header_buffers, client_max_body_size, client_body_buffer_size)
    max_head_bytes: int = 32 * 1024       # a request's headers (and a response's) -> 431
    max_headers: int = 100                # header lines in one head -> 431
    # one header line (nginx: one large_client_header_buffers buffer, 8k) -> 431; at most 8190, the most the
    # API's gunicorn takes (its limit_request_field_size, which it caps there even when told 0)
    max_header_field_bytes: int = 8190
    max_target_bytes: int = 8 * 1024      # the request target (path and query) -> 414
    serve_max_body_mb: int = 100          # a request body to an endpoint or a notebook -> 413
    body_memory_bytes: int = 1 * MB       # a request body held in memory up to this, then in a temporary file
    max_connections: int = 1000           # open client connections; past it a new one gets 503 and is closed
    # caches
    endpoint_cache_size: int = 1024       # endpoint addresses kept (least recently used dropped first)
    endpoint_cache_seconds: float = 1.0   # how long a found address is trusted
    negative_cache_seconds: float = 3.0   # how long "no such endpoint" is trusted
    lingering_timeout: float = 2.0        # after an early error answer, the rest of the request is read this long
    lingering_time: float = 30.0          # ... and at most this long in all, however much comes

    @property
    def serve_max_body_bytes(self) -> int:
        return self.serve_max_body_mb * MB

    @property
    def tick(self) -> float:
        """How often deadlines are checked: a quarter of the shortest timeout, between 50 ms and 1 s."""
        shortest = min(self.client_header_timeout, self.keepalive_timeout, self.client_body_timeout,
                       self.send_timeout, self.proxy_connect_timeout, self.proxy_read_timeout,
                       self.tunnel_idle_timeout, self.lingering_timeout)
        return max(0.05, min(1.0, shortest / 4))

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None) -> "FrontConfig":
        """The defaults, overridden by `KAOS_FRONT_<FIELD>` in `environ` (default os.environ).
        Raises FrontConfigError for a value that is not a positive finite number (`inf` and `nan` parse as floats:
        an infinite or `nan` timeout never fires, an infinite body hold keeps a request in the express lane with no
        deadline). The connection cap is also held below what the open-file limit allows (three descriptors a
        connection: client, upstream, spooled body; the kept-alive upstream connections come on top, bounded by
        `upstream_keepalive_total`)."""
        environ = os.environ if environ is None else environ
        values = {}
        for field in fields(cls):
            raw = environ.get(ENV_PREFIX + field.name.upper(), "").strip()
            if not raw:
                continue
            if field.type in (bool, "bool"):
                if raw.lower() not in ("0", "1", "true", "false"):
                    raise FrontConfigError(f"{ENV_PREFIX}{field.name.upper()} must be 0 or 1, not {raw!r}")
                values[field.name] = raw.lower() in ("1", "true")
                continue
            kind = int if field.type in (int, "int") else float
            try:
                value = kind(raw)
            except ValueError:
                raise FrontConfigError(f"{ENV_PREFIX}{field.name.upper()} must be a number, not {raw!r}") from None
            if not math.isfinite(value) or value <= 0:
                raise FrontConfigError(f"{ENV_PREFIX}{field.name.upper()} must be a finite number above 0")
            values[field.name] = value
        config = cls(**values)
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and config.max_connections > max(16, (soft - 64) // 3):
            config = replace(config, max_connections=max(16, (soft - 64) // 3))
        return config
