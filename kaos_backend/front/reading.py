"""Reading requests from a client connection (a part of client.Client, kept apart by responsibility): the bytes in,
parsed (parsing.RequestReader) in bounded slices, each request's head checked and its body's buffer made, and
the deadlines of a head and a body. The state it works on is the Client's (client.py's state machine)."""
import hmac
import time
from typing import Optional

from kaos_backend.front import routing
from kaos_backend.front.body import Body
from kaos_backend.front.heads import HttpError
from kaos_backend.front.parsing import Request

ARTIFACT_ROUTES = b"/internal/artifacts/"  # authorised by a workload's artifact token, not the X-Token

HEAD, BODY, WAIT, TUNNEL, LINGER, CLOSED = "head", "body", "wait", "tunnel", "linger", "closed"
LANE_BODY = "lane body"  # the express lane holds a request head for the rest of its body (express.py)
MAX_BACKLOG = 64 * 1024     # raw bytes held behind a waiting pipelined request before reading pauses
MAX_QUEUED = 32             # complete pipelined requests waiting behind the active one before the rest is held raw
PARSE_SLICE = 4096          # bytes parsed at a time while requests wait (so that MAX_QUEUED is noticed)
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class RequestReading:
    """The request side of client.Client (a mixin: Client holds the attributes)."""
    __slots__ = ()

    def _hold(self, data) -> None:
        self.backlog += data
        if len(self.backlog) > MAX_BACKLOG and not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def _feed(self, data) -> None:
        """Parse what the client sent, PARSE_SLICE bytes at a time (the rest of a body with nothing waiting goes at
        once) and, once MAX_QUEUED complete requests wait, the rest is held raw (bounded by MAX_BACKLOG, then reading
        pauses): one read of small pipelined requests cannot make thousands of parsed requests wait in memory.
        An Upgrade the front does not honour is followed by the next request (looped, not recursed)."""
        start, end = 0, len(data)
        reader = self.reader
        while start < end:
            if self.active is None and not self.queue and reader.request is not None and not reader.in_head:
                stop = end                      # inside a body, nothing waiting: all at once (an upload's reads)
            elif len(self.queue) >= MAX_QUEUED:
                self._hold(data[start:])
                return
            else:
                stop = min(end, start + PARSE_SLICE)
            piece = data if start == 0 and stop == end else memoryview(data)[start:stop]
            try:
                upgraded = reader.feed(piece)
            except HttpError as error:
                if self.active is not None:  # the requests before it are answered first, in order
                    self.refusal = error
                else:
                    self.refuse(error)
                return
            if self.state == LINGER or self.state == CLOSED:
                return
            if upgraded is None:
                start = stop
                continue
            start += upgraded
            last = self.active if not self.queue else self.queue[-1]
            if last is not None and last.upgrade:
                self.upgrade_bytes = bytes(data[start:])  # the tunnel's first bytes (the request is on its way)
                return
        if reader.in_head and self.state == HEAD and self.on_deadline != self._head_timeout:
            self.arm(self.config.client_header_timeout, self._head_timeout)
        elif self.state == BODY:
            self._arm_body()

    def request_head(self, request: Request) -> Optional[Body]:
        """The parser has a request's head: route it, check it; the Body to fill, if it has one."""
        if request.method == b"CONNECT":
            raise HttpError(405, "METHOD_NOT_ALLOWED", "CONNECT is not served here")
        request.route = route = routing.route(request, self.front.api_max_body, self.config.serve_max_body_bytes)
        if self.front.internal_only and (route.name is not None or not route.target.startswith(ARTIFACT_ROUTES)):
            raise HttpError(404, "NOT_FOUND", "Not found: this port serves the internal artifact routes only")
        has_body = bool(request.length) or request.chunked
        if request.upgrade and (has_body or not route.upgrade):
            if has_body:
                raise HttpError(400, "BAD_REQUEST", "Bad request: an Upgrade request with a body")
            request.upgrade = False  # not a WebSocket to a workload: an ordinary request
        if not has_body:
            return None
        if route.name is None and self.front.token is not None:
            self._check_token(request)
        limit = route.max_body
        message = (self.front.api_limit_message if route.name is None else
                   f"The request body is larger than the limit of {limit // (1024 * 1024)} MB")
        if request.length is not None and request.length > limit:
            raise HttpError(413, "PAYLOAD_TOO_LARGE", message)
        body = Body(limit, self.config.body_memory_bytes, message)
        request.expects_continue = (request.version == "1.1"
                                    and (request.header(b"expect") or b"").lower() == b"100-continue")
        if self.active is None and not self.queue:
            self.state = BODY
            self._arm_body(body)
            self._continue(request)
        return body

    def _check_token(self, request: Request) -> None:
        """An API request with a body must carry the token before the body is read: the API's 401, earlier. A
        workload's hand-back to an internal artifact route (api/artifacts.py) carries its own artifact token
        instead, which only the API can check: it must carry one (`Authorization: Bearer ...`)."""
        if request.route.target.startswith(ARTIFACT_ROUTES):
            scheme, _, token = (request.header(b"authorization") or b"").partition(b" ")
            if scheme.lower() != b"bearer" or not token.strip():
                raise HttpError(401, "AUTHORIZATION_FAILURE",
                                "An artifact token is required (Authorization: Bearer <token>)")
            return
        given = request.header(b"x-token")
        if given is None:
            raise HttpError(401, "AUTHORIZATION_FAILURE", "Authorization header not present in the request")
        if not hmac.compare_digest(given, self.front.token):
            raise HttpError(401, "AUTHORIZATION_FAILURE", "Unauthorized Token")

    def _continue(self, request: Request) -> None:
        """The 100 Continue a request asked for, once its body is the one being read (not while it waits its
        turn behind pipelined requests: its body would then come before the front reads it)."""
        if request.expects_continue:
            request.expects_continue = False
            self.transport.write(CONTINUE)

    def _head_timeout(self) -> None:
        self.refuse(HttpError(408, "REQUEST_TIMEOUT",
                              f"The request head did not come within {self.config.client_header_timeout:g} s"))

    def _arm_body(self, body: Optional[Body] = None) -> None:
        """While a body is read: `client_body_timeout` between two reads, and in all no longer than that plus one
        second per `client_body_min_rate` bytes received (Apache's mod_reqtimeout MinRate): a body trickled
        steadily, a few bytes before each timeout, is cut too."""
        config = self.config
        self.body_read_at = now = time.monotonic()
        if body is None:
            request = self.reader.request
            body = request.body if request is not None else None
        deadline = now + config.client_body_timeout
        if body is not None:
            allowed = config.client_body_timeout + body.size / config.client_body_min_rate
            deadline = min(deadline, body.started + allowed)
        self.deadline, self.on_deadline = deadline, self._body_timeout

    def _body_timeout(self) -> None:
        config = self.config
        if time.monotonic() - self.body_read_at >= config.client_body_timeout:
            message = f"The request body stalled for {config.client_body_timeout:g} s"
        else:
            message = f"The request body came slower than {config.client_body_min_rate:g} bytes a second"
        self.refuse(HttpError(408, "REQUEST_TIMEOUT", message))

