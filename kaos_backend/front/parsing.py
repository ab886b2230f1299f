"""HTTP/1.1 parsing with httptools (llhttp, the parser behind Node.js and uvicorn), for the requests of a client
connection and the responses of an upstream one. What llhttp refuses is refused (400); on top of it the front's
bounds: the request target (414), the head's size and header count (431), HTTP/1.x only (505), Host required
in HTTP/1.1 and only once (400).

The parser calls back into a *sink* (the client or upstream connection) at each step of a message: the sink
keeps the state, this module only turns bytes into fields. An HttpError raised by the sink inside a callback
comes out of `feed` as it was raised.
"""
from typing import List, Optional

import httptools

from kaos_backend.front.config import FrontConfig
from kaos_backend.front.heads import Header, HttpError

RESPONSE_MAX_HEAD = 64 * 1024
RESPONSE_MAX_HEADERS = 200


def other_coding(value: bytes) -> Optional[bytes]:
    """The first transfer coding in a Transfer-Encoding value other than chunked (lowercase), or None; empty list
    elements do not count (RFC 9110 5.6.1)."""
    for coding in value.split(b","):
        coding = coding.strip(b" \t").lower()
        if coding and coding != b"chunked":
            return coding
    return None


def last_coding(headers: List[Header]) -> bytes:
    """The last transfer coding the Transfer-Encoding headers list (lowercase; b"" for none)."""
    last = b""
    for name, _, value in headers:
        if name == b"transfer-encoding":
            for coding in value.split(b","):
                coding = coding.strip(b" \t").lower()
                if coding:
                    last = coding
    return last


class UpstreamProtocolError(Exception):
    """An upstream's response that cannot be relayed (llhttp refused it, or its head is too large)."""


class Request:
    """One request: its parsed head, its body (a body.Body while it is read, or None), what routing decided."""
    __slots__ = ("method", "target", "version", "headers", "keep_alive", "upgrade", "body", "route", "chunked",
                 "length", "complete", "expects_continue", "rerouted")

    def __init__(self):
        self.method = b""
        self.target = b""
        self.version = "1.1"
        self.headers: List[Header] = []
        self.keep_alive = True
        self.upgrade = False
        self.body = None
        self.route = None
        self.chunked = False
        self.length: Optional[int] = None   # Content-Length as sent
        self.complete = False
        self.expects_continue = False       # Expect: 100-continue, not answered yet
        self.rerouted = False               # sent again to its endpoint's new address (at most once)

    def header(self, name: bytes) -> Optional[bytes]:
        """The value of the first header called `name` (lowercase), or None."""
        for header in self.headers:
            if header[0] == name:
                return header[2]
        return None


class RequestReader:
    """Bytes of one client connection in, `sink.request_head(request)` and `sink.request_done(request)` out."""
    __slots__ = ("config", "sink", "parser", "request", "error", "in_head", "began_now", "head_size", "head_fed",
                 "target_size")

    def __init__(self, config: FrontConfig, sink):
        self.config = config
        self.sink = sink
        self.parser = httptools.HttpRequestParser(self)
        self.request: Optional[Request] = None
        self.error: Optional[HttpError] = None
        self.in_head = False
        self.began_now = False
        self.head_size = 0      # bytes of headers counted so far (names, values, separators)
        self.head_fed = 0       # bytes fed while a head was incomplete, past the read in which it began
        self.target_size = 0

    def feed(self, data) -> Optional[int]:
        """Parse `data`: None, or the offset in `data` where the bytes of an upgraded connection begin.
        Raises HttpError for a request to refuse (the connection is then unusable)."""
        self.began_now = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            return upgrade.args[0]
        except httptools.HttpParserError as error:
            if self.error is not None:
                raise self.error from None
            raise HttpError(400, "BAD_REQUEST", f"Bad request: {error}") from None
        if self.in_head:
            self.head_fed = 0 if self.began_now else self.head_fed + len(data)
            if self.head_fed > self.config.max_head_bytes + self.config.max_target_bytes:
                raise HttpError(431, "HEADERS_TOO_LARGE", "Request header fields are too large")
        return None

    def _fail(self, error: HttpError):
        self.error = error
        raise error

    # -- llhttp's callbacks
    def on_message_begin(self):
        self.request = Request()
        self.in_head, self.began_now = True, True
        self.head_size = self.head_fed = self.target_size = 0

    def on_url(self, url: bytes):
        self.target_size += len(url)
        if self.target_size > self.config.max_target_bytes:
            self._fail(HttpError(414, "URI_TOO_LONG", "The request target is too long"))
        self.request.target += url

    def on_header(self, name: bytes, value: bytes):
        self.head_size += len(name) + len(value) + 4
        if self.head_size > self.config.max_head_bytes:
            self._fail(HttpError(431, "HEADERS_TOO_LARGE", "Request header fields are too large"))
        if len(name) + len(value) + 2 > self.config.max_header_field_bytes:
            self._fail(HttpError(431, "HEADERS_TOO_LARGE", "A request header field is larger than "
                                                           f"{self.config.max_header_field_bytes} bytes"))
        if not self.in_head:
            return  # a trailer of a chunked body: not forwarded (the body goes on with a Content-Length)
        headers = self.request.headers
        if len(headers) >= self.config.max_headers:
            self._fail(HttpError(431, "HEADERS_TOO_LARGE", f"More than {self.config.max_headers} request headers"))
        headers.append((name.lower(), name, value))

    def on_headers_complete(self):
        self.in_head = False
        request, parser = self.request, self.parser
        request.method = parser.get_method()
        request.version = parser.get_http_version()
        request.keep_alive = parser.should_keep_alive()
        request.upgrade = parser.should_upgrade()
        if request.version not in ("1.0", "1.1"):
            self._fail(HttpError(505, "HTTP_VERSION_NOT_SUPPORTED", "Only HTTP/1.0 and HTTP/1.1 are served"))
        hosts = 0
        other = None
        for name, _, value in request.headers:
            if name == b"host":
                hosts += 1
            elif name == b"content-length":
                request.length = int(value)  # llhttp accepted it: digits, and only one
            elif name == b"transfer-encoding":
                request.chunked = True       # llhttp accepts it only with chunked last
                other = other_coding(value) or other
        if other is not None and last_coding(request.headers) == b"chunked":
            # chunked last: llhttp would take the body, and the coding before it (gzip...) would be passed on as
            # plain bytes. A coding it does not know is 501 (RFC 9112 6.1, nginx); with chunked not last the
            # framing is unknowable, llhttp's 400 (RFC 9112 6.3)
            self._fail(HttpError(501, "NOT_IMPLEMENTED", "The transfer coding "
                                 f"{other.decode('latin-1')!r} is not implemented: only chunked is"))
        if request.chunked and request.version == "1.0":
            request.keep_alive = False       # RFC 9112 6.1: faulty framing in HTTP/1.0, close after it
        if hosts > 1 or (hosts == 0 and request.version == "1.1"):
            self._fail(HttpError(400, "BAD_REQUEST", "Bad request: an HTTP/1.1 request needs one Host header"))
        try:
            request.body = self.sink.request_head(request)
        except HttpError as error:
            self._fail(error)

    def on_body(self, data: bytes):
        body = self.request.body
        if body is not None:
            try:
                body.write(data)
            except HttpError as error:
                self._fail(error)

    def on_message_complete(self):
        request, self.request = self.request, None
        request.complete = True
        self.sink.request_done(request)


class Response:
    """A response head from upstream: status, its text, headers and framing."""
    __slots__ = ("status", "status_text", "headers", "length", "chunked", "keep_alive")

    def __init__(self):
        self.status = 0
        self.status_text = b""
        self.headers: List[Header] = []
        self.length: Optional[int] = None
        self.chunked = False
        self.keep_alive = False


class ResponseReader:
    """Bytes of one upstream connection in; `sink.response_head(response)`, `sink.response_body(data)` and
    `sink.response_done()` out. Interim (1xx) responses other than 101 are skipped."""
    __slots__ = ("sink", "parser", "response", "interim", "head_size", "complete", "error")

    def __init__(self, sink):
        self.sink = sink
        self.parser = httptools.HttpResponseParser(self)
        self.response: Optional[Response] = None
        self.interim = False
        self.head_size = 0
        self.complete = False   # a final response ended: any byte after it is an error (the connection's reuse)
        # what a callback refused, kept here: llhttp's callback error carries it only as its __context__, which
        # a `feed` called while another exception is handled would not keep
        self.error: Optional[UpstreamProtocolError] = None

    def reset(self, sink) -> None:
        """The next response on the same (kept-alive) connection goes to `sink`: one parser for a connection's
        life, not one a request (a parser and its reader refer to each other: garbage only the collector frees)."""
        self.sink = sink
        self.response = None
        self.interim = False
        self.complete = False

    def feed(self, data) -> Optional[int]:
        """Parse `data`: None, or the offset where a 101's upgraded bytes begin. Raises UpstreamProtocolError."""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            return upgrade.args[0]
        except httptools.HttpParserCallbackError:
            error, self.error = self.error, None
            if error is not None:
                raise error from None
            raise
        except httptools.HttpParserError as error:
            raise UpstreamProtocolError(f"bad response: {error}") from None
        return None

    def _fail(self, message: str):
        self.error = UpstreamProtocolError(message)
        raise self.error

    def on_message_begin(self):
        if self.complete:
            self._fail("bytes after the response")
        self.response = Response()
        self.head_size = 0

    def on_status(self, status: bytes):
        self.response.status_text += status

    def on_header(self, name: bytes, value: bytes):
        self.head_size += len(name) + len(value) + 4
        if self.head_size > RESPONSE_MAX_HEAD or len(self.response.headers) >= RESPONSE_MAX_HEADERS:
            self._fail("response head too large")
        self.response.headers.append((name.lower(), name, value))

    def on_headers_complete(self):
        response = self.response
        response.status = self.parser.get_status_code()
        if not 100 <= response.status <= 599:  # RFC 9110 15: three digits, 1xx to 5xx
            self._fail(f"a response status out of range ({response.status})")
        self.interim = 100 <= response.status < 200 and response.status != 101
        if self.interim:
            return
        response.keep_alive = self.parser.should_keep_alive()
        for name, _, value in response.headers:
            if name == b"content-length":
                response.length = int(value)
            elif name == b"transfer-encoding":
                response.chunked = True
                other = other_coding(value)
                if other is not None:  # its framing would be removed and the coded bytes passed on as plain
                    self._fail(f"a transfer coding the front does not relay ({other.decode('latin-1')})")
        try:
            self.sink.response_head(response)
        except (UpstreamProtocolError, HttpError) as error:
            self._fail(str(error))

    def on_body(self, data: bytes):
        self.sink.response_body(data)

    def on_message_complete(self):
        if self.interim:
            self.interim = False
            return
        self.complete = True
        self.sink.response_done()
