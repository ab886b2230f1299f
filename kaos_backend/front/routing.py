"""Where a request goes: `/serve-<ws>-<hex6>/...` to that endpoint's server (the path after the name, with its
query), `/notebook-<ws>-<user>/...` to that notebook's Jupyter with the path kept (Jupyter serves under that
base URL, as 1.x's Ambassador kept a notebook's path and stripped a model server's), everything else to the
API's gunicorn (as it came: the API checks the token). Paths are checked before routing: a dot segment (`.`,
`..`, raw or percent-encoded, after `/` or `\\`) is refused (400), so no path can leave `/serve-x/` for another
workload or for `/api/`; leading slashes are collapsed into one (1.x clients send `//api/...` and `/api//...`;
the API collapses the inner ones). The name segment's percent-encoded octets are decoded before routing
(`/serve-ws%2Daaaaaa/` is `/serve-ws-aaaaaa/`); one that decodes to no workload's name (a `/`, a `%`, a control
byte: anything but letters, digits, `-`, `.`, `_`) is a 404 naming the segment as sent.

Hand-offs (for modules that serve a response from the front itself, e.g. log follows): `API_HANDOFFS` maps a
response header name (lowercase) to `handler(client, request, response) -> bool`. Such a header is honoured only
on a response from the API's own socket (the handler then owns the client connection when it returns True), and
is removed from every request and every endpoint's response, so no outsider can trigger one.
"""
import re
from typing import Callable, Dict, Optional
from urllib.parse import unquote_to_bytes

from kaos_backend.front.heads import HttpError

WORKLOAD_PREFIXES = (b"/serve-", b"/notebook-")
PATH_KEEPING_PREFIXES = (b"/notebook-",)
API_HANDOFFS: Dict[bytes, Callable] = {}
_WORKLOAD_NAMES = tuple(prefix[1:] for prefix in WORKLOAD_PREFIXES)       # b"serve-", b"notebook-"
_PATH_KEEPING_NAMES = tuple(prefix[1:] for prefix in PATH_KEEPING_PREFIXES)
_NAME = re.compile(rb"^[A-Za-z0-9_.-]+$")
_ABSOLUTE = re.compile(rb"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*")
_SEGMENT_SPLIT = re.compile(rb"[/\\]")


class Route:
    """`name` is the workload's (None: the API); `target` the request target to send upstream."""
    __slots__ = ("name", "target", "max_body", "upgrade")

    def __init__(self, name: Optional[str], target: bytes, max_body: int, upgrade: bool):
        self.name = name
        self.target = target
        self.max_body = max_body
        self.upgrade = upgrade    # a WebSocket handshake to relay as a tunnel


def route(request, api_max_body: int, serve_max_body: int) -> Route:
    """The Route of a parsed request (parsing.Request); raises HttpError (400) for a target that is refused."""
    target = request.target
    if target == b"*" and request.method == b"OPTIONS":
        return Route(None, target, api_max_body, False)
    absolute = _ABSOLUTE.match(target)
    if absolute:  # absolute-form (RFC 9112 3.2.2): routed on its path, like origin-form
        target = target[absolute.end():] or b"/"
        if not target.startswith(b"/"):
            target = b"/" + target
    if not target.startswith(b"/"):
        raise HttpError(400, "BAD_REQUEST", "Bad request: the request target must be a path")
    path, question, query = target.partition(b"?")
    if path.startswith(b"//"):  # 1.x clients join `<endpoint>/` and `/route`: repeated slashes are one
        path = b"/" + path.lstrip(b"/")
        target = path + question + query
    for segment in _SEGMENT_SPLIT.split(unquote_to_bytes(path)):
        if segment in (b".", b".."):
            raise HttpError(400, "BAD_REQUEST", "Bad request: dot segments are not allowed in the path")
    websocket = request.upgrade and (request.header(b"upgrade") or b"").strip().lower() == b"websocket"
    segment, slash, rest = path[1:].partition(b"/")
    # the name segment with its percent-encoded octets decoded (RFC 3986 6.2.2.2: `%2D` is `-`); only the
    # unreserved characters can make a name, so one encoding anything else is no name (a `/`, a `%`...)
    name = unquote_to_bytes(segment) if b"%" in segment else segment
    if name.startswith(_WORKLOAD_NAMES):
        if not _NAME.match(name):  # no workload has such a name: a 404 naming what was sent, without a lookup
            shown = segment.decode("latin-1")
            raise HttpError(404, "PIPELINE_NOT_FOUND", f"Pipeline {shown} not found: not a workload's name")
        if name.startswith(_PATH_KEEPING_NAMES):  # the path as sent, the name as decoded
            forwarded = b"/" + name + slash + rest + question + query
        else:
            forwarded = b"/" + rest.lstrip(b"/") + question + query
        return Route(name.decode("ascii"), forwarded, serve_max_body, websocket)
    return Route(None, target, api_max_body, False)
