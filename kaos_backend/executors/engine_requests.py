"""The engine requests of the scheduler's tick (to the Docker engine, to the Kubernetes API server) while they are in
flight, and the last one that timed out. Standard library only.

The scheduler makes its controllers' engine requests in its tick (kaos_backend.scheduler marks the tick's thread
with `ticking()`): a request the engine accepts and never answers (a wedged etcd behind an API server whose GET
/version still answers; a Docker engine stuck on a create) holds every controller until the client's timeout.
Each client wraps its requests in `tracked(what, bound)`, which does nothing off the tick's thread (watchers,
followed logs, API requests are not the tick's). Meanwhile:

    waiting(after)      the tick's request in flight for over `after` seconds, if any: Request(what, since, bound);
                        the engine watch (control/engine_watch.py) reads it from a thread of its own and says in
                        the engine's status that the scheduler waits on the engine (kaos_backend.part_status)
    timed_out()         the tick's last request that timed out, or whose connection the engine closed without
                        an answer (`is_dropped`: a dockerd restarted under it, a proxy or tunnel cut), TimedOut(what,
                        error, bound, at, dropped), until `take_timed_out()`: the controllers end their round
                        (control/common.advance_each, without counting the try against the workload), the engine
                        watch holds the workloads as while the engine does not answer, with a back-off
"""
import socket
import threading
import time
from contextlib import contextmanager
from typing import Dict, Iterator, NamedTuple, Optional


class EngineError(RuntimeError):
    """The engine the workloads run on cannot be reached or did not answer (kubernetes_client.ClusterUnavailable,
    docker_client.EngineUnavailable): said in one line, no traceback."""


class Request(NamedTuple):
    what: str     # "POST /api/v1/namespaces/kaos/secrets", "POST /containers/create"
    since: float  # epoch seconds, when it was sent
    bound: float  # seconds its client waits at most for the answer


class TimedOut(NamedTuple):
    what: str
    error: str    # what the client said, one line
    bound: float  # seconds waited at most
    at: float     # epoch seconds
    dropped: bool = False  # the engine closed the connection without an answer (not a timeout)

    def said(self) -> str:
        """'did not answer POST /containers/create within 120 s', or 'closed the connection of POST
        /containers/create without an answer'."""
        if self.dropped:
            return f"closed the connection of {self.what} without an answer"
        return f"did not answer {self.what} within {self.bound:.0f} s"


_lock = threading.Lock()
_local = threading.local()
_in_flight: Dict[int, Request] = {}   # by the id of its token
_timed_out: Optional[TimedOut] = None


@contextmanager
def ticking() -> Iterator[None]:
    """The calling thread runs the scheduler's tick while inside: its engine requests are tracked."""
    before = getattr(_local, "ticking", False)
    _local.ticking = True
    try:
        yield
    finally:
        _local.ticking = before


def is_ticking() -> bool:
    return getattr(_local, "ticking", False)


@contextmanager
def tracked(what: str, bound: float) -> Iterator[None]:
    """Around one engine request of the tick: in flight while inside; an error that is a timeout (`is_timeout`)
    or a connection closed without an answer (`is_dropped`) is recorded as `timed_out()` (and raised on). Off the
    tick's thread: nothing."""
    global _timed_out
    if not is_ticking():
        yield
        return
    token = object()
    with _lock:
        _in_flight[id(token)] = Request(what, time.time(), float(bound))
    try:
        yield
    except BaseException as error:
        timeout = is_timeout(error)
        if timeout or is_dropped(error):
            text = (str(error).splitlines() or [type(error).__name__])[0][:300]
            with _lock:
                _timed_out = TimedOut(what, text or type(error).__name__, float(bound), time.time(), not timeout)
        raise
    finally:
        with _lock:
            _in_flight.pop(id(token), None)


def bound_of(timeout, default: float = 0.0) -> float:
    """The longest a request sent with the client's `timeout` (seconds, or (connect, read) as requests and urllib3
    take it; None: `default`) waits for its answer, in seconds."""
    if timeout is None:
        return float(default)
    return float(sum(timeout)) if isinstance(timeout, (tuple, list)) else float(timeout)


def waiting(after: float = 0.0, now: Optional[float] = None) -> Optional[Request]:
    """The oldest of the tick's requests in flight for more than `after` seconds, else None."""
    now = time.time() if now is None else now
    with _lock:
        oldest = min(_in_flight.values(), key=lambda request: request.since, default=None)
    return oldest if oldest is not None and now - oldest.since > after else None


def timed_out() -> Optional[TimedOut]:
    """The tick's last request that timed out, until `take_timed_out()`."""
    with _lock:
        return _timed_out


def take_timed_out() -> Optional[TimedOut]:
    """`timed_out()`, forgotten."""
    global _timed_out
    with _lock:
        found, _timed_out = _timed_out, None
        return found


def is_timeout(error: Optional[BaseException]) -> bool:
    """`error`, or what it wraps (urllib3's MaxRetryError's reason, requests' and the client's causes), is a
    connection's or a read's timeout."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, (socket.timeout, TimeoutError)) or "Timeout" in type(error).__name__:
            return True  # urllib3's ReadTimeoutError, ConnectTimeoutError; requests' ReadTimeout, ConnectTimeout
        error = _wrapped(error)
    return False


# The connection ended without an answer: reset or closed by the engine (http.client's RemoteDisconnected is a
# ConnectionResetError), or by what stands between (a socket proxy, an ssh tunnel). Not a refused connection: no
# engine there, which the engine watch's own look says.
DROPPED = (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)


def is_dropped(error: Optional[BaseException]) -> bool:
    """`error`, or what it wraps (as `is_timeout` looks), is a connection the engine closed without an answer."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, DROPPED):
            return True
        error = _wrapped(error)
    return False


def _wrapped(error: BaseException) -> Optional[BaseException]:
    """What `error` wraps: urllib3's `reason`, the cause or context, the first of its arguments that is an error
    (requests' first, urllib3's ProtocolError's second)."""
    reason = getattr(error, "reason", None)
    if isinstance(reason, BaseException):
        return reason
    if error.__cause__ is not None or error.__context__ is not None:
        return error.__cause__ or error.__context__
    return next((argument for argument in error.args if isinstance(argument, BaseException)), None)


def reset() -> None:
    """Forget everything (tests)."""
    global _timed_out
    with _lock:
        _in_flight.clear()
        _timed_out = None
