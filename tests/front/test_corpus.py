"""Issue 9, input 5 and item 7: the differential corpus. Each raw request is sent over a socket to a real
backend's front door; the expected status is what llhttp (the parser behind Node.js and uvicorn) and the
front's bounds say, and the connection must be closed after every refusal (and stay open after an ordinary
answer, which a follow-up request proves)."""
import json

import pytest

from tests.front.support import FRONT_ENV, exchange
from tests.support.backend import BackendProcess

T = b"test-token"  # tests.support.backend.TEST_TOKEN
H = b"Host: kaos\r\n"
CHUNKED = b"POST /serve-ws-aaaaaa/invocations HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
CL = b"POST /serve-ws-aaaaaa/invocations HTTP/1.1\r\n" + H


def get(target: bytes, headers: bytes = b"", version: bytes = b"HTTP/1.1") -> bytes:
    return b"GET " + target + b" " + version + b"\r\n" + H + headers + b"\r\n"


# (id, raw request, expected status, closed afterwards)
CORPUS = [
    # -- framing: the classic smuggling cases
    ("cl-and-te", CL + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, True),
    ("te-and-cl", CL + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400, True),
    ("duplicate-cl-same", CL + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400, True),
    ("duplicate-cl-different", CL + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400, True),
    ("cl-list", CL + b"Content-Length: 5, 5\r\n\r\nhello", 400, True),
    ("cl-negative", CL + b"Content-Length: -1\r\n\r\n", 400, True),
    ("cl-plus", CL + b"Content-Length: +5\r\n\r\nhello", 400, True),
    ("cl-hex", CL + b"Content-Length: 0x5\r\n\r\nhello", 400, True),
    ("cl-inner-space", CL + b"Content-Length: 1 2\r\n\r\nhello", 400, True),
    ("obs-fold", get(b"/api/health", b"X-Token: " + T + b"\r\nX-Folded: a\r\n b\r\n"), 400, True),
    ("obs-fold-te", CL + b"Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n", 400, True),
    ("te-gzip", CL + b"Transfer-Encoding: gzip\r\n\r\n", 400, True),
    ("te-chunked-not-last", CL + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 400, True),
    ("te-xchunked", CL + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400, True),
    # -- a transfer coding other than chunked (before it): 501, never its coded bytes passed on as a plain body
    ("te-gzip-chunked", CL + b"Transfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 501, True),
    ("te-gzip-then-chunked-headers", CL + b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     501, True),
    ("te-identity-chunked", CL + b"Transfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n", 501, True),
    ("te-gzip-chunked-uppercase", CL + b"Transfer-Encoding: GZIP, Chunked\r\n\r\n0\r\n\r\n", 501, True),
    ("te-gzip-chunked-to-api", b"POST /api/workspace HTTP/1.1\r\n" + H + b"X-Token: " + T
     + b"\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501, True),
    ("te-chunked-uppercase", CL + b"Transfer-Encoding: CHUNKED\r\n\r\n0\r\n\r\n", 404, False),
    ("te-chunked-empty-list-element", CL + b"Transfer-Encoding: , chunked\r\n\r\n0\r\n\r\n", 404, False),
    ("te-space-before-colon", CL + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400, True),
    ("chunk-size-leading-space", CHUNKED + b" 0\r\n\r\n", 400, True),
    ("chunk-size-trailing-space", CHUNKED + b"0 \r\n\r\n", 400, True),
    ("chunk-lines-lf-only", CHUNKED + b"3\nabc\n0\n\n", 400, True),
    ("last-chunk-lf-only", CHUNKED + b"0\n\n", 400, True),
    ("chunk-size-not-hex", CHUNKED + b"x\r\nabc\r\n0\r\n\r\n", 400, True),
    ("chunk-size-negative", CHUNKED + b"-1\r\nabc\r\n0\r\n\r\n", 400, True),
    ("chunk-size-plus", CHUNKED + b"+3\r\nabc\r\n0\r\n\r\n", 400, True),
    ("chunk-size-overflow", CHUNKED + b"ffffffffffffffffff\r\n", 400, True),
    ("chunk-data-too-long", CHUNKED + b"3\r\nabcd\r\n0\r\n\r\n", 400, True),
    ("chunk-ext-unterminated-quote", CHUNKED + b"3;a=\"b\r\nabc\r\n0\r\n\r\n", 400, True),
    ("chunk-ext-empty", CHUNKED + b"3;\r\nabc\r\n0\r\n\r\n", 400, True),
    ("chunk-ext-bare-cr", CHUNKED + b"3;a\rb\r\nabc\r\n0\r\n\r\n", 400, True),
    # -- heads llhttp refuses
    ("head-lf-only", b"GET /api/health HTTP/1.1\nHost: kaos\nX-Token: " + T + b"\n\n", 400, True),
    ("nul-in-header-value", get(b"/api/health", b"X-A: a\x00b\r\n"), 400, True),
    ("cr-in-header-value", get(b"/api/health", b"X-A: a\rb\r\n"), 400, True),
    ("del-in-header-value", get(b"/api/health", b"X-A: a\x7fb\r\n"), 400, True),
    ("nul-in-path", get(b"/api/he\x00alth"), 400, True),
    ("control-in-path", get(b"/serve-ws-aaaaaa/a\x01b"), 400, True),
    ("tab-in-path", get(b"/serve-ws-aaaaaa/a\tb"), 400, True),
    ("space-in-header-name", get(b"/api/health", b"X A: b\r\n"), 400, True),
    ("empty-header-name", get(b"/api/health", b": b\r\n"), 400, True),
    ("header-without-colon", get(b"/api/health", b"X-A\r\n"), 400, True),
    ("no-host-http11", b"GET /api/health HTTP/1.1\r\nX-Token: " + T + b"\r\n\r\n", 400, True),
    ("two-hosts", get(b"/api/health", b"Host: other\r\n"), 400, True),
    ("http2-version", get(b"/api/health", version=b"HTTP/2.0"), 505, True),
    ("http09", b"GET /api/health\r\n\r\n", 505, True),
    ("bad-method", get(b"/api/health").replace(b"GET", b"G@T", 1), 400, True),
    ("lowercase-method", get(b"/api/health").replace(b"GET", b"get", 1), 400, True),
    ("connect", b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n", 405, True),
    ("double-space-request-line-rebuilt", b"GET  /api/workspace HTTP/1.1\r\n" + H + b"\r\n", 401, False),
    ("authority-form", b"GET evil.example:80 HTTP/1.1\r\n" + H + b"\r\n", 400, True),
    # -- bounds: head size, header count, target length, body size
    ("ten-thousand-headers", get(b"/api/health", b"".join(b"X-%d: y\r\n" % n for n in range(10000))), 431, True),
    ("101-headers", get(b"/api/health", b"".join(b"X-%d: y\r\n" % n for n in range(101))), 431, True),
    ("one-40kb-header", get(b"/api/health", b"X-Big: " + b"y" * 40000 + b"\r\n"), 431, True),
    # one line past 8190 bytes: the front's 431, not gunicorn's own (it caps a field at 8190 even when told 0)
    ("one-9kb-header", get(b"/api/health", b"X-Big: " + b"y" * 9000 + b"\r\n"), 431, True),
    ("one-8kb-header-passes", get(b"/api/health", b"X-Token: " + T + b"\r\nX-Big: " + b"y" * 8100 + b"\r\n"),
     200, False),
    ("target-10kb", get(b"/serve-ws-aaaaaa/" + b"a" * 10000), 414, True),
    ("cl-over-serve-limit", CL + b"Content-Length: 2000000\r\n\r\n", 413, True),
    ("cl-over-serve-limit-expect", CL + b"Content-Length: 2000000\r\nExpect: 100-continue\r\n\r\n", 413, True),
    ("cl-2gb-to-api", b"POST /api/data/ws/features HTTP/1.1\r\n" + H + b"X-Token: " + T +
     b"\r\nContent-Length: 2147483648\r\n\r\n", 413, True),
    ("chunked-over-serve-limit", CHUNKED + (b"%x\r\n" % 700000 + b"z" * 700000 + b"\r\n") * 2 + b"0\r\n\r\n", 413,
     True),
    ("upgrade-with-body", CL + b"Connection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 2\r\n\r\nhi", 400,
     True),
    # -- paths: never out of /serve-x/, never to /api/ without the token
    ("dot-dot", get(b"/serve-ws-aaaaaa/../api/workspace"), 400, True),
    ("encoded-dot-dot", get(b"/serve-ws-aaaaaa/%2e%2e/api/workspace"), 400, True),
    ("mixed-case-encoded-dot-dot", get(b"/serve-ws-aaaaaa/%2E%2e/%2e%2E/api/workspace"), 400, True),
    ("half-encoded-dot-dot", get(b"/serve-ws-aaaaaa/.%2e/api/workspace"), 400, True),
    ("encoded-slash-dot-dot", get(b"/serve-ws-aaaaaa/..%2fapi%2fworkspace"), 400, True),
    ("backslash-dot-dot", get(b"/serve-ws-aaaaaa/..%5capi"), 400, True),
    ("dot", get(b"/./api/workspace"), 400, True),
    ("api-dot-dot-serve", get(b"/api/../serve-ws-aaaaaa/x"), 400, True),
    ("name-of-dots-is-no-workspace", get(b"/serve-%2e%2e/api/workspace"), 404, False),
    ("leading-double-slash-api-is-the-api", get(b"//api/workspace"), 401, False),
    ("leading-slashes-serve-stays-that-endpoint", get(b"///serve-ws-aaaaaa/x"), 404, False),
    ("leading-double-slash-then-dot-dot", get(b"//serve-ws-aaaaaa/../api/workspace"), 400, True),
    ("double-slash-after-name-stays-in-endpoint", get(b"/serve-ws-aaaaaa//api/workspace"), 404, False),
    ("api-without-token", get(b"/api/workspace"), 401, False),
    ("absolute-form-api-without-token", get(b"http://evil.example/api/workspace"), 401, False),
    ("absolute-form-unknown-endpoint", get(b"http://evil.example/serve-ws-aaaaaa/x"), 404, False),
    ("unknown-endpoint", get(b"/serve-ws-aaaaaa/invocations"), 404, False),
    ("encoded-name", get(b"/serve-ws%2daaaaaa/x"), 404, False),
    ("encoded-prefix", get(b"/%73erve-ws-aaaaaa/x"), 404, False),
    ("encoded-slash-in-name", get(b"/serve-abc%2Fdef"), 404, True),
    ("encoded-slash-in-notebook-name", get(b"/notebook-a%2Fb/lab"), 404, True),
    ("encoded-percent-in-name", get(b"/serve-ws%25aaaaaa/x"), 404, True),
    ("double-encoded-slash-in-name", get(b"/serve-abc%252Fdef/x"), 404, True),
    ("encoded-control-in-name", get(b"/serve-abc%00def/x"), 404, True),
    ("encoded-slash-dot-dot-in-name", get(b"/serve-x%2F..%2Fapi%2Fworkspace"), 400, True),
    ("encoded-slash-api-in-name", get(b"/serve-x%2Fapi%2Fworkspace"), 404, True),
    ("encoded-slash-after-prefix-word", get(b"/serve%2Fapi/workspace"), 404, False),  # the API's: no such route
    ("bad-character-in-name", get(b"/serve-a!b/x"), 404, True),
    # -- ordinary requests, answered and kept open
    ("health", get(b"/api/health", b"X-Token: " + T + b"\r\n"), 200, False),
    ("health-absolute-form", get(b"http://kaos/api/health", b"X-Token: " + T + b"\r\n"), 200, False),
    ("http10-no-host", b"GET /api/health HTTP/1.0\r\nX-Token: " + T + b"\r\n\r\n", 200, True),
    ("http10-keep-alive", b"GET /api/health HTTP/1.0\r\nConnection: keep-alive\r\nX-Token: " + T + b"\r\n\r\n",
     200, False),
    ("chunked-with-trailer", CHUNKED + b"3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n", 404, False),
    ("chunked-with-extension", CHUNKED + b"3;name=value\r\nabc\r\n0\r\n\r\n", 404, False),
    ("upgrade-to-api-is-ignored", get(b"/api/health", b"X-Token: " + T + b"\r\nConnection: Upgrade\r\n"
                                                       b"Upgrade: websocket\r\n"), 200, False),
    ("blank-line-before-request", b"\r\n" + get(b"/api/health", b"X-Token: " + T + b"\r\n"), 200, False),
    ("close", get(b"/api/health", b"X-Token: " + T + b"\r\nConnection: close\r\n"), 200, True),
]


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    server = BackendProcess(tmp_path_factory.mktemp("front-corpus") / "data", env=FRONT_ENV).start()
    yield server
    server.stop()


def test_the_corpus_is_large_enough():
    assert len(CORPUS) >= 60 and len({case[0] for case in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("raw, status, closed", [case[1:] for case in CORPUS], ids=[case[0] for case in CORPUS])
def test_corpus(backend, raw, status, closed):
    got, body, was_closed = exchange(backend, raw)
    assert got == status, body[:300]
    assert was_closed == closed
    if status >= 400:
        assert set(json.loads(body)) >= {"error_code", "message"}, body[:300]  # never a traceback, never empty


def test_a_pipelined_request_behind_a_refused_one_is_not_answered(backend):
    raw = get(b"/api/health", b"X-Token: " + T + b"\r\n") + CHUNKED + b" 0\r\n\r\n" + get(b"/api/workspace")
    got, _, closed = exchange(backend, raw)
    assert got == 200  # the first one; the second is refused and the third never parsed (see the corpus)
