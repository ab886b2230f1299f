"""The express lane's side of a response (express.py): reading it with llhttp and rebuilding its head as it comes,
and holding heads whose body is late, all with one timer.

A response stays in the lane only when it is plain: status 200-599 but 204 and 304, a Content-Length of at most
EXPRESS_RESPONSE_BYTES, one message, no Connection token but keep-alive or close (and no header called `Close`,
which `Connection: close` would name), a head within the general path's bounds (parsing.RESPONSE_MAX_HEAD and
RESPONSE_MAX_HEADERS, and the front's max_headers). Anything else stops the parser (a callback raises) and the
lane hands the exchange to the general path (upstream.Upstream), which relays it or refuses it (502).
"""
import time
from typing import Dict, List, Optional, Tuple

import httptools

from kaos_backend.front import routing
from kaos_backend.front.heads import FRAMING, HOP_BY_HOP, reason
from kaos_backend.front.parsing import RESPONSE_MAX_HEAD, RESPONSE_MAX_HEADERS

EXPRESS_RESPONSE_BYTES = 64 * 1024  # a response larger than this streams on the general path (backpressure)
PLAN_MAX_HEAD = 4096  # a head longer than this is parsed each time, not kept per connection for comparison


def head_ends_at(data: bytes, size: int) -> bool:
    """Whether `data`'s head (through its first CRLF CRLF) is exactly its first `size` bytes: where llhttp's head
    ended by the parser's count (llhttp also skips a CRLF after a message, which would shift the head into a body)."""
    return data.find(b"\r\n\r\n") + 4 == size


def plannable(data: bytes, size: int) -> bool:
    """Whether the head of `data`, `size` bytes by the parser's count, may be kept as a plan (express.py)."""
    return size <= PLAN_MAX_HEAD and head_ends_at(data, size)


class NotForTheLane(Exception):
    """Raised in a parser callback (as STOP): llhttp stops at once, and the lane leaves the message to the general
    path. Raised as the class, a new instance each time: one instance raised again and again would keep every
    traceback (each raise adds its frames to the last), and with them every lane and client that ever raised it."""


STOP = NotForTheLane
_KEEP_ALIVE_OR_CLOSE = (b"keep-alive", b"close")


class ResponseReading:
    """One connection's responses as the lane reads them (the protocol of its llhttp parser). `reset()` before
    each; `whole` once complete; `head()` is the head to send (as upstream.Upstream.response_head rebuilds it: the
    headers as sent, hop-by-hop and framing ones dropped, and the front's Content-Length)."""
    __slots__ = ("parser", "max_headers", "skip", "status_text", "headers", "size", "lines", "body", "messages",
                 "whole", "keep_alive", "status", "declared", "length")

    def __init__(self, max_headers: int):
        self.parser = httptools.HttpResponseParser(self)
        self.max_headers = min(max_headers, RESPONSE_MAX_HEADERS)
        self.status = 0
        self.keep_alive = False
        # the response headers not forwarded; the hand-off names are registered at the front's start, so by now
        self.skip = HOP_BY_HOP | FRAMING | frozenset(routing.API_HANDOFFS)
        self.reset()

    def reset(self) -> None:
        self.status_text = b""
        self.headers = 0
        self.size = 0                     # the head's size as parsing.ResponseReader counts it
        self.lines: List[bytes] = [b""]   # the head's lines, the status line put in first at the end
        self.body: List[bytes] = []
        self.messages = 0
        self.whole = False
        self.declared: Optional[int] = None  # Content-Length as the head declares it, while it is read
        self.length: Optional[int] = None    # ... once the head is whole and plain (None: the head is not whole)
        # (status and keep_alive are set when the head is whole, before anything reads them)

    def head(self) -> bytes:
        lines = self.lines
        status = self.status
        lines[0] = b"HTTP/1.1 %d %s" % (status, self.status_text or reason(status))
        lines.append(b"Content-Length: %d" % self.length)
        lines.append(b"\r\n")
        return b"\r\n".join(lines)

    # -- llhttp's callbacks
    def on_message_begin(self):
        self.messages += 1
        if self.messages > 1:  # bytes after the response: the general path distrusts such a server
            raise STOP

    def on_status(self, text):
        self.status_text += text

    def on_header(self, name, value):
        self.headers += 1
        self.size += len(name) + len(value) + 4
        if self.headers > self.max_headers or self.size > RESPONSE_MAX_HEAD:
            raise STOP  # the general path refuses a head past its bounds (502): its decision
        lowered = name.lower()
        if lowered not in self.skip:
            if lowered == b"close":
                raise STOP  # dropped when Connection says close, else kept: the general path's decision
            self.lines.append(name + b": " + value)
        elif lowered == b"content-length":
            self.declared = int(value)  # llhttp took it: digits, and only one
        elif lowered == b"connection" and value.lower() not in _KEEP_ALIVE_OR_CLOSE:
            raise STOP  # it names other headers to drop: the general path's

    def on_headers_complete(self):
        parser = self.parser
        self.status = status = parser.get_status_code()
        self.keep_alive = parser.should_keep_alive()
        length = self.declared
        if (status < 200 or status > 599 or status == 204 or status == 304 or length is None
                or length > EXPRESS_RESPONSE_BYTES):
            raise STOP  # interim, bodiless, chunked, until the close, or large: the general path's
        self.length = length  # (only now: a head whose hold runs out before it is whole is not sent)

    def on_body(self, data):
        self.body.append(data)

    def on_message_complete(self):
        self.whole = True


class HeadHolds:
    """Heads waiting for their body, each at most `seconds`: response heads for their body's first bytes, to go
    out with them in one write (config.head_hold_seconds), or request heads for the rest of their body
    (config.body_hold_seconds): one timer for all the lanes of a front, not one made and cancelled per request.
    A lane whose hold runs out has its method called `expired` called."""

    def __init__(self, loop, seconds: float, expired: str = "hold_expired"):
        self.loop = loop
        self.seconds = seconds
        self.expired = expired
        self.waiting: Dict[object, float] = {}  # lane -> until (monotonic)
        self.timer = None

    def hold(self, lane) -> None:
        self.waiting[lane] = time.monotonic() + self.seconds
        if self.timer is None:
            self.timer = self.loop.call_later(self.seconds, self._expire)

    def release(self, lane) -> None:
        self.waiting.pop(lane, None)

    def _expire(self) -> None:
        self.timer = None
        now = time.monotonic()
        expired: List[Tuple[object, float]] = [(lane, until) for lane, until in self.waiting.items() if until <= now]
        for lane, _ in expired:
            del self.waiting[lane]
        for lane, _ in expired:
            try:
                getattr(lane, self.expired)()
            except Exception:  # noqa: BLE001 - one connection's trouble must not keep the others' heads held
                lane.client.abort()
        if self.waiting and self.timer is None:
            self.timer = self.loop.call_later(max(0.0, min(self.waiting.values()) - now), self._expire)
