"""parsing.ResponseReader turns what its callbacks refuse into UpstreamProtocolError whatever the caller is doing:
llhttp's callback error carries the refusal only as its __context__, which Python replaces when `feed` runs while
another exception is being handled (the express lane hands a response over from such a place; it once crashed the
loop's callback instead of answering 502)."""
import pytest

from kaos_backend.front.parsing import ResponseReader, UpstreamProtocolError


class Sink:
    def __init__(self):
        self.heads, self.done = [], 0

    def response_head(self, response):
        self.heads.append(response.status)

    def response_body(self, data):
        pass

    def response_done(self):
        self.done += 1


@pytest.mark.parametrize("data, message", [
    (b"HTTP/1.1 099 Weird\r\nContent-Length: 0\r\n\r\n", "out of range"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n\r\n", "bytes after the response"),
    (b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 300 + b"\r\n", "too large"),
])
def test_a_refused_response_is_an_upstream_protocol_error_even_inside_an_except_block(data, message):
    for inside_except in (False, True):
        reader = ResponseReader(Sink())
        with pytest.raises(UpstreamProtocolError, match=message):
            if inside_except:
                try:
                    raise RuntimeError("another exception being handled")
                except RuntimeError:
                    reader.feed(data)
            else:
                reader.feed(data)


def test_a_sink_refusing_a_head_is_an_upstream_protocol_error():
    class Refusing(Sink):
        def response_head(self, response):
            raise UpstreamProtocolError("a 101 Switching Protocols to a request that did not ask to upgrade")
    reader = ResponseReader(Refusing())
    try:
        raise KeyError("busy")
    except KeyError:
        with pytest.raises(UpstreamProtocolError, match="did not ask to upgrade"):
            reader.feed(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
