"""A workload's name with percent-encoded unreserved characters is that workload's (RFC 3986 6.2.2.2); one that
decodes to anything else is a 404 naming the segment as the client sent it."""
import json

import pytest

from tests.front.support import exchange


def _get(target: bytes) -> bytes:
    return b"GET " + target + b" HTTP/1.1\r\nHost: kaos\r\n\r\n"


def test_an_encoded_name_reaches_its_endpoint(front_backend, endpoint):
    name = endpoint.encode()
    for encoded in (name[:-1] + b"%%%02X" % name[-1], name[:-1] + b"%%%02x" % name[-1],
                    b"%73" + name[1:], name.replace(b"-", b"%2D")):
        status, body, closed = exchange(front_backend, _get(b"/" + encoded + b"/ping?q=%2F"))
        assert status == 200 and not closed, (encoded, body[:300])
        assert json.loads(body)["path"] == "/ping?q=%2F"


@pytest.mark.parametrize("segment", [b"serve-abc%2Fdef", b"notebook-a%2Fb", b"serve-ws%25aaaaaa", b"serve-a%00b",
                                     b"serve-abc%252Fdef", b"serve-a!b"])
def test_a_name_that_decodes_to_no_name_is_a_404_naming_what_was_sent(front_backend, segment):
    status, body, _ = exchange(front_backend, _get(b"/" + segment + b"/lab"))
    assert status == 404, body[:300]
    answer = json.loads(body)
    assert answer["error_code"] == "PIPELINE_NOT_FOUND" and segment.decode() in answer["message"], answer


def test_an_unknown_encoded_name_is_named_decoded(front_backend):
    status, body, _ = exchange(front_backend, _get(b"/serve-mnist-adb50%33/ping"))
    assert status == 404 and "serve-mnist-adb503" in json.loads(body)["message"], body[:300]
