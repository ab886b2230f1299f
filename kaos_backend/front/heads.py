"""Building the heads the front sends: a request head for the upstream and a response head for the client, from
parsed fields (never the bytes as they came), and the front's own JSON answers.

Headers are lists of (lowercase name, name as sent, value) of bytes. Hop-by-hop headers (RFC 9110 7.6.1: the
standard ones and any named in Connection) are never forwarded either way; framing (Content-Length or chunked)
is the front's own.
"""
import json
from http import HTTPStatus
from typing import Iterable, List, Optional, Sequence, Tuple

Header = Tuple[bytes, bytes, bytes]

HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"trailers",
                        b"transfer-encoding", b"upgrade", b"proxy-authenticate", b"proxy-authorization"})
FRAMING = frozenset({b"content-length", b"transfer-encoding"})
# the forwarding headers (nginx's proxy_add_x_forwarded_for, $remote_addr and $scheme): the front's own, the
# client's replaced (its X-Forwarded-For extended)
FORWARDING = (b"x-forwarded-for", b"x-real-ip", b"x-forwarded-proto")


class HttpError(Exception):
    """A request the front answers itself: `status` (400, 408, 413, 414, 431, 502...), `code` (the JSON
    error_code) and `message`; `close` when the connection cannot carry another request after it."""

    def __init__(self, status: int, code: str, message: str, close: bool = True):
        super().__init__(message)
        self.status, self.code, self.message, self.close = status, code, message, close

    def response(self) -> bytes:
        return json_response(self.status, self.code, self.message, close=self.close)


def reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode("latin-1")
    except ValueError:
        return b"Unknown"


def json_response(status: int, code: str, message: str, close: bool = False, extra: Optional[dict] = None) -> bytes:
    """A whole response: `{"error_code": code, "message": message, **extra}` as JSON."""
    body = json.dumps({"error_code": code, "message": message, **(extra or {})}).encode()
    head = b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n" % (
        status, reason(status), len(body), b"Connection: close\r\n" if close else b"")
    return head + body


def connection_tokens(headers: Sequence[Header]) -> frozenset:
    """The lowercase tokens of every Connection header (they name more hop-by-hop headers)."""
    tokens = set()
    for name, _, value in headers:
        if name == b"connection":
            for token in value.split(b","):
                tokens.add(token.strip().lower())
    return frozenset(tokens)


_SKIP_CACHE: dict = {}


def end_to_end(headers: Sequence[Header], drop: Iterable[bytes] = ()) -> List[Header]:
    """The headers that pass a proxy: hop-by-hop ones, Connection's tokens, framing and `drop` removed."""
    drop = tuple(drop)
    skip = _SKIP_CACHE.get(drop)  # the few `drop` sets in use, each joined to the fixed ones once
    if skip is None:
        skip = _SKIP_CACHE[drop] = HOP_BY_HOP | FRAMING | frozenset(drop)
    base = skip
    kept = []
    for header in headers:  # (loops, not comprehensions: each of those is a function made and called, in 3.11)
        name = header[0]
        if name in skip:
            if name == b"connection":
                skip = skip | connection_tokens(headers)
        else:
            kept.append(header)
    if skip is not base:  # Connection named more: a header it names may have come before it
        kept = [header for header in kept if header[0] not in skip]
    return kept


def peer_address(transport) -> bytes:
    """The client's address as the forwarding headers give it (an IP, no port; `unix:` for a unix socket's
    client, as nginx's $remote_addr)."""
    peer = transport.get_extra_info("peername") if transport is not None else None
    if isinstance(peer, tuple) and peer:
        return str(peer[0]).encode("ascii", "replace")
    return b"unix:"


def forwarding(peer: bytes, headers: Sequence[Header] = ()) -> bytes:
    """The forwarding header line for a request from `peer` with `headers`: X-Forwarded-For, the client's own
    (every one, joined as nginx joins them) with `peer` appended. Only that one: each header more costs the endpoint
    its parsing on every request (gunicorn's, in Python: with X-Real-IP and X-Forwarded-Proto too, the mnist
    endpoint's CPU per prediction through the front rose from ~45 to ~85 µs over direct in bench/gateway.py), and
    the peer is X-Forwarded-For's last address anyway. A client's own X-Real-IP and X-Forwarded-Proto are dropped
    (FORWARDING)."""
    chain = []
    for name, _, value in headers:
        if name == b"x-forwarded-for" and value:
            chain.append(value)
    chain.append(peer)
    return b"X-Forwarded-For: %s" % b", ".join(chain)


def _head(first: bytes, headers: Iterable[Header], extra: Iterable[bytes]) -> bytes:
    lines = [first]
    for _, name, value in headers:
        lines.append(name + b": " + value)
    lines.extend(extra)
    lines.append(b"\r\n")
    return b"\r\n".join(lines)


def request_head(method: bytes, target: bytes, headers: Iterable[Header], extra: Iterable[bytes] = ()) -> bytes:
    """`method target HTTP/1.1`, the headers, then `extra` lines (framing, Connection, Host)."""
    return _head(method + b" " + target + b" HTTP/1.1", headers, extra)


def response_head(status: int, status_text: bytes, headers: Iterable[Header], extra: Iterable[bytes] = ()) -> bytes:
    """`HTTP/1.1 status text`, the headers, then `extra` lines."""
    return _head(b"HTTP/1.1 %d %s" % (status, status_text or reason(status)), headers, extra)


def chunk(data) -> bytes:
    """One chunk of a chunked body (an empty `data` is not a chunk: it would end the body)."""
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"
