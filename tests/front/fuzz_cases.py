"""The cases of the express lane's fuzzer (express_fuzz.py): `Case(sends, scripts, client_end)` is the bytes the
client sends, as a list of (bytes, pause before the next send in seconds); the endpoint's behaviour for its 1st,
2nd... request (each a list of steps: bytes to write, a float to sleep, CLOSE or RESET to end the connection); and
what the client does once it has sent (READ its answers, LEAVE at once, HALF_CLOSE its side). `generate(rng)` makes
one from a random.Random: requests half plain (the lane's) and half odd, endpoint behaviour mostly plain with
pauses around the hold, and sometimes odd framing, interim responses, stray bytes, closes, resets and stalls."""
import random
from dataclasses import dataclass, field
from typing import List, Tuple

from kaos_backend.front.express_response import EXPRESS_RESPONSE_BYTES
from tests.front.fuzz_world import CLOSE, HANDOFF, HOLD, MAX_BODY, NAME, RESET, STALL, plain

READ, LEAVE, HALF_CLOSE = "read", "leave", "half-close"


@dataclass
class Case:
    sends: List[Tuple[bytes, float]]
    scripts: List[list] = field(default_factory=list)
    client_end: str = READ

    def literal(self) -> str:
        return f"Case({self.sends!r}, {self.scripts!r}, {self.client_end!r})"


_METHODS = [b"GET"] * 6 + [b"POST"] * 6 + [b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"HEAD", b"PROPFIND", b"get",
                                          b"CONNECT", b"TRACE"]
_SEGMENTS = [b"invocations", b"ping", b"", b".", b"..", b"%2e%2e", b"%2F", b"a\\b", b"a;b", b"x#frag", b"%41",
             b"\x80\xff", b"a b", b"\x7f", b"\t", b"api", b"-", b"~user", b"/", b"..;"]
_QUERIES = [b"", b"", b"?", b"?a=1", b"?x=/../api", b"?%2e%2e", b"?q=" + b"q" * 500, b"?#"]
_NAMES = [NAME] * 12 + [b"serve-ws-aaaaab", b"notebook-ws-u", b"Serve-ws-aaaaaa", b"serve-ws-aaaaaa.", b"serve-"]
_VERSIONS = [b"1.1"] * 12 + [b"1.0", b"1.2", b"2.0", b"0.9"]


def _case_variants(rng: random.Random, name: bytes) -> bytes:
    return bytes(c ^ 0x20 if rng.random() < 0.5 and chr(c).isalpha() else c for c in name)


def _header(rng: random.Random, name: bytes, value: bytes) -> bytes:
    if rng.random() < 0.3:
        name = _case_variants(rng, name)
    separator = rng.choice([b": ", b": ", b":", b":  ", b": \t"])
    return name + separator + value + rng.choice([b"", b"", b"", b" "]) + b"\r\n"


_BENIGN = [(b"Content-Type", b"application/json"), (b"Accept", b"*/*"), (b"User-Agent", b"fuzz"),
           (b"Authorization", b"Bearer t"), (b"Cookie", b"a=1"), (b"X-Obs", b"caf\xe9"), (b"X-Empty", b""),
           (b"X-Dup", b"1"), (b"X-Dup", b"2"), (b"Connection", b"keep-alive"), (b"Keep-Alive", b"timeout=5"),
           (b"TE", b"trailers"), (b"Upgrade", b"websocket"), (b"X-Token", b"platform-secret"),
           (b"Idempotency-Key", b"k")]


def _request_headers(rng: random.Random, body: bytes, wild: bool) -> Tuple[List[bytes], bytes]:
    """Header lines and the body as framed (chunked or not)."""
    lines = []
    hosts = rng.choices([0, 1, 2], [1, 20, 1])[0] if wild else 1
    lines += [_header(rng, b"Host", rng.choice([b"front", b"", b"a:1", b"\x80"])) for _ in range(hosts)]
    pool = _BENIGN + [(b"x-tOKEN", b"s"), (b"Trailer", b"X-T"), (HANDOFF, b"/api/secret"), (b"X-Hop", b"1"),
                      (b"Close", b"1"), (b"Keep-alive", b"1"), (b"Proxy-Connection", b"keep-alive"),
                      (b"Proxy-Authorization", b"x"), (b"Expect", rng.choice([b"100-continue", b"x"])),
                      (b"Connection", rng.choice([b"keep-alive", b"Keep-Alive", b"close", b"X-Hop",
                                                  b"keep-alive, X-Hop", b"upgrade", b"", b"keep-alive,",
                                                  b"close, keep-alive", b"Close"])),
                      (b"Transfer-Encoding", rng.choice([b"chunked", b"gzip", b"gzip, chunked", b"chunked, chunked"])),
                      (b"X-Nul", b"a\x00b"), (b"X-CR", b"a\rb"), (b"Bad Name", b"1")]
    for _ in range(rng.choices([0, 1, 3, 6], [3, 4, 3, 1])[0]):
        lines.append(_header(rng, *rng.choice(pool if wild else _BENIGN)))
    if rng.random() < 0.08:  # many headers, near max_headers (20)
        lines += [_header(rng, b"X-M%d" % n, b"m") for n in range(rng.randint(14, 22))]
    if rng.random() < 0.06:  # a large header or head, near max_header_field_bytes (1024) and max_head_bytes (4096)
        size = rng.choice([1015, 1016, 1017, 1018, 1100])
        lines += [_header(rng, b"X-Big%d" % n, b"b" * (size - 8)) for n in range(rng.choice([1, 3, 4, 5]))]
    chunked = any(line.lower().startswith(b"transfer-encoding") for line in lines)
    framing = rng.random()
    if chunked and framing < 0.8:
        if body:
            cut = rng.randint(0, len(body))
            pieces = [p for p in (body[:cut], body[cut:]) if p]
            body = b"".join(b"%x%s\r\n%s\r\n" % (len(p), rng.choice([b"", b";ext=1"]), p) for p in pieces)
        body += b"0\r\n" + rng.choice([b"", b"X-Trailer: 1\r\n"]) + b"\r\n"
    elif framing < 0.85 or body:
        length = len(body)
        value = b"%d" % length
        if wild:
            value = rng.choices([value, b"%d" % (length + 1), b"%d" % max(0, length - 1), b"+%d" % length,
                                 b"0%d" % length, b"%d, %d" % (length, length), b" %d" % length],
                                [30, 1, 1, 1, 1, 1, 1])[0]
        lines.append(_header(rng, b"Content-Length", value))
        if wild and rng.random() < 0.04:
            lines.append(_header(rng, b"Content-Length", rng.choice([b"%d" % length, b"%d" % (length + 2)])))
    rng.shuffle(lines)
    return lines, body


def _body(rng: random.Random) -> bytes:
    size = rng.choices([0, rng.randint(1, 300), rng.randint(300, 70000), rng.choice(
        [EXPRESS_RESPONSE_BYTES - 1, EXPRESS_RESPONSE_BYTES, EXPRESS_RESPONSE_BYTES + 1, 200 * 1024,
         MAX_BODY, MAX_BODY + 1])], [5, 5, 2, 1])[0]
    if size and rng.random() < 0.2:  # a request smuggled in the body
        smuggled = b"GET /api/workspace HTTP/1.1\r\nHost: x\r\nX-Token: t\r\n\r\n"
        return (smuggled * (size // len(smuggled) + 1))[:size]
    return bytes(rng.getrandbits(8) for _ in range(min(size, 64))) * (size // 64 + 1) if size else b""


def request(rng: random.Random) -> bytes:
    """A request to the endpoint: half of them plain (the lane's), the others with anything odd."""
    wild = rng.random() < 0.3
    method = rng.choice(_METHODS) if wild else rng.choice([b"GET", b"POST", b"POST", b"PUT", b"DELETE"])
    body = _body(rng) if method not in (b"GET", b"HEAD", b"OPTIONS") or rng.random() < 0.1 else b""
    name = rng.choice(_NAMES) if wild else NAME
    segments = _SEGMENTS if wild else [b"invocations", b"ping", b"", b"a;b", b"%41", b"x#frag", b"\x80\xff"]
    path = b"".join(b"/" + rng.choice(segments) for _ in range(rng.choices([0, 1, 2, 3], [1, 6, 3, 1])[0]))
    if rng.random() < 0.1:
        path = b"/" + path
    target = b"/" + name + path + rng.choice(_QUERIES)
    lines, body = _request_headers(rng, body, wild)
    head = (method + b" " + target + b" HTTP/" + (rng.choice(_VERSIONS) if wild else b"1.1") + b"\r\n"
            + b"".join(lines) + b"\r\n")
    if wild and rng.random() < 0.05:
        head = head.replace(b"\r\n", b"\n")
    return head + body


_STATUSES = [b"200 OK"] * 10 + [b"201 Created", b"404 Not Found", b"500 Internal Server Error", b"418 I'm a teapot",
                                b"200 ", b"200", b"599 Odd", b"600 Too Far", b"099 Low", b"205 Reset Content",
                                b"302 Found", b"200 O\x80K"]
_INTERIM = [b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"]
_BODYLESS = [b"HTTP/1.1 204 No Content\r\nServer: s\r\n\r\n", b"HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n",
             b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"]


def response(rng: random.Random) -> bytes:
    """One response, its framing mostly right."""
    if rng.random() < 0.06:
        return rng.choice(_BODYLESS)
    body = rng.choices([b"", b'{"result": [3]}', b"r" * rng.randint(100, 3000),
                        b"R" * rng.choice([EXPRESS_RESPONSE_BYTES - 1, EXPRESS_RESPONSE_BYTES,
                                           EXPRESS_RESPONSE_BYTES + 1])], [2, 10, 3, 1])[0]
    lines = []
    pool = [(b"Server", b"gunicorn"), (b"Content-Type", b"application/json"), (b"Keep-Alive", b"timeout=2"),
            (b"Connection", rng.choice([b"keep-alive", b"close", b"X-Hop", b"keep-alive, X-Hop", b"Close", b"",
                                        b"upgrade"])),
            (b"X-Hop", b"1"), (b"Close", b"1"), (b"Set-Cookie", b"a=1"), (b"Set-Cookie", b"b=2"), (HANDOFF, b"/x"),
            (b"Trailer", b"X-T"), (b"Upgrade", b"h2"), (b"Proxy-Connection", b"close"), (b"X-Obs", b"\xe9"),
            (b"TE", b"x"), (b"Transfer-Encoding", b"gzip")]
    for _ in range(rng.choices([0, 1, 3, 6], [3, 5, 3, 1])[0]):
        lines.append(_header(rng, *rng.choice(pool)))
    if rng.random() < 0.05:  # many response headers, near the lane's and the general path's counts
        lines += [_header(rng, b"X-R%d" % n, b"r") for n in range(rng.choice([19, 20, 21, 150, 199, 200, 201]))]
    if rng.random() < 0.04:  # a large response head, near the general path's 64 KiB
        size = rng.choice([60 * 1024, 64 * 1024, 70 * 1024])
        lines += [_header(rng, b"X-Big%d" % n, b"b" * 4000) for n in range(size // 4012)]
    framing = rng.random()
    if framing < 0.8:
        length = rng.choices([len(body), len(body) + 1, max(0, len(body) - 1)], [30, 1, 1])[0]
        lines.append(_header(rng, b"Content-Length", b"%d" % length))
        if rng.random() < 0.03:
            lines.append(_header(rng, b"Content-Length", rng.choice([b"%d" % length, b"%d" % (length + 1)])))
    elif framing < 0.93:
        lines.append(_header(rng, b"Transfer-Encoding", b"chunked"))
        body = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
    rng.shuffle(lines)
    version = rng.choices([b"HTTP/1.1", b"HTTP/1.0"], [12, 1])[0]
    head = version + b" " + rng.choice(_STATUSES) + b"\r\n" + b"".join(lines) + b"\r\n"
    if rng.random() < 0.05:
        head = rng.choice(_INTERIM) + head
    return head + body


def script(rng: random.Random) -> list:
    """The endpoint's answer to one request: a response in one or more writes with pauses, maybe followed by
    stray bytes, a close or a reset; sometimes no answer, a response cut short, or a stall past the read
    timeout."""
    kind = rng.choices(["plain", "none", "cut", "stall", "interim stall"], [70, 4, 10, 8, 4])[0]
    if kind == "none":
        return [rng.choice([CLOSE, RESET])]
    whole = response(rng)
    if kind == "interim stall":
        whole = rng.choice(_INTERIM) + whole[:rng.randint(0, len(whole) - 1)]
    elif kind == "cut":
        whole = whole[:rng.randint(1, len(whole) - 1)]
    cuts = sorted(rng.sample(range(1, len(whole)), min(len(whole) - 1, rng.choices([0, 1, 2, 3], [6, 4, 2, 1])[0])))
    steps: list = []
    before_head, start = 0.0, 0
    for cut in cuts + [len(whole)]:
        steps.append(whole[start:cut])
        if cut < len(whole):
            pause = rng.choice([0.0, 0.01, 0.03, HOLD - 0.01, HOLD + 0.02, 0.1, 0.3])
            if b"\r\n\r\n" not in whole[:cut]:
                pause = min(pause, max(0.0, 0.4 - before_head))
                before_head += pause
            steps.append(pause)
        start = cut
    if kind in ("cut", "interim stall"):
        steps += [rng.choice([0.0, 0.1, STALL, STALL]), rng.choice([CLOSE, RESET])]
    elif kind == "stall":
        steps.insert(rng.randrange(len(steps) + 1), STALL)
    after = rng.random()
    if after < 0.06:
        steps.append(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray")  # in the same write or just after
    elif after < 0.1:
        steps += [0.1, b"late stray bytes"]
    elif after < 0.16:
        steps.append(rng.choice([CLOSE, RESET]))
    return steps


def _same_length(rng: random.Random, data: bytes) -> bytes:
    """Bytes of `data`'s length, mostly different ones."""
    return bytes(rng.getrandbits(8) for _ in range(len(data))) if rng.random() < 0.8 else data


def repeated(rng: random.Random) -> Case:
    """A connection's request sent again and again (the lane's plans: express.py), each answered with the same
    response head: bodies of the same length or not, the head and body of a request sent apart (within the body
    hold or past it) and of a response written apart (within the head hold or past it), a response with bytes
    after it."""
    method = rng.choice([b"POST", b"POST", b"PUT", b"GET"])
    body = b"" if method == b"GET" else rng.choice([b"{}", b"x" * rng.randint(1, 3000), b"y" * 70000])
    lines, body = _request_headers(rng, body, False)
    head = (method + b" /" + NAME + b"/invocations" + rng.choice(_QUERIES) + b" HTTP/1.1\r\n" + b"".join(lines)
            + b"\r\n")
    answer = plain(rng.choice([b'{"result": [3]}', b"r" * rng.randint(100, 3000)]))
    answer_head, _, answer_body = answer.partition(b"\r\n\r\n")
    answer_head += b"\r\n\r\n"
    sends, scripts = [], []
    for _ in range(rng.choice([2, 3, 4])):
        this = _same_length(rng, body) if rng.random() < 0.9 else body + b"+"
        request_head = head if len(this) == len(body) else head.replace(b"%d" % len(body), b"%d" % len(this))
        after = b"\r\n" if rng.random() < 0.1 else b""  # (llhttp skips a CRLF between messages)
        if this and rng.random() < 0.4:
            sends += [(request_head, rng.choice([0.0, 0.01, HOLD + 0.03])), (this + after, 0.3)]
        else:
            sends.append((request_head + this + after, 0.3))
        reply = answer_head + _same_length(rng, answer_body) + (b"\r\n" if rng.random() < 0.1 else b"")
        cut = rng.choice([None, None, len(answer_head), rng.randint(1, len(reply) - 1)])
        steps: list = [reply] if cut is None else [reply[:cut], rng.choice([0.0, 0.01, HOLD + 0.03]), reply[cut:]]
        if rng.random() < 0.1:
            steps.append(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray")
        scripts.append(steps)
    sends[-1] = (sends[-1][0], 0.0)
    return Case(sends, scripts + [script(rng)])


def generate(rng: random.Random) -> Case:
    """A random case: 1 to 3 requests, pipelined (sent without waiting) or one after the other's answer, split at
    random points; or (a quarter of them) one request repeated (`repeated`)."""
    if rng.random() < 0.25:
        return repeated(rng)
    count = rng.choices([1, 2, 3], [12, 3, 1])[0]
    sends = []
    mode = rng.random()
    if mode < 0.4:  # one after the other, each whole in one send, waiting for the answer
        for _ in range(count):
            sends.append((request(rng), rng.choice([0.2, 0.4])))
    elif mode < 0.6:  # the next sent while the one before is in flight (pipelined, not in the same read)
        count = max(2, count)
        for _ in range(count):
            sends.append((request(rng), rng.choice([0.0, 0.005, 0.02, HOLD, 0.1])))
    else:
        data = b"".join(request(rng) for _ in range(count))
        splits = rng.choices([0, 1, 2, 4], [20, 3, 2, 1])[0]
        cuts = sorted(set(rng.sample(range(1, len(data)), min(len(data) - 1, splits))))
        start = 0
        for cut in cuts + [len(data)]:
            sends.append((data[start:cut], rng.choice([0.0, 0.0, 0.01, 0.05])))
            start = cut
    sends[-1] = (sends[-1][0], 0.0)
    scripts = [script(rng) for _ in range(count + 1)]  # (+1: a retried request)
    client_end = rng.choices([READ, LEAVE, HALF_CLOSE], [20, 1, 1])[0]
    return Case(sends, scripts, client_end)
