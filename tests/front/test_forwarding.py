"""The endpoint learns who the client is (nginx's proxy_add_x_forwarded_for convention): X-Forwarded-For is the
client's own with the peer the front sees appended; a client's X-Real-IP or X-Forwarded-Proto does not pass (the
front sends neither: the peer is X-Forwarded-For's last address). tests/front/test_express.py checks that both
paths send the same."""
import json

from tests.front.support import exchange


def _echoed_headers(backend, endpoint: str, extra: bytes = b"") -> dict:
    raw = b"GET /%s/echo HTTP/1.1\r\nHost: kaos\r\n%s\r\n" % (endpoint.encode(), extra)
    status, body, _ = exchange(backend, raw)
    assert status == 200, body[:300]
    return {name.lower(): value for name, value in json.loads(body)["headers"].items()}


def test_the_peer_is_set_when_the_client_sends_none(front_backend, endpoint):
    headers = _echoed_headers(front_backend, endpoint)
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert "x-real-ip" not in headers and "x-forwarded-proto" not in headers


def test_the_peer_is_appended_to_the_clients_own(front_backend, endpoint):
    headers = _echoed_headers(front_backend, endpoint, b"X-Forwarded-For: 203.0.113.7\r\nX-Real-IP: 10.9.9.9\r\n"
                                                       b"X-Forwarded-Proto: https\r\n")
    assert headers["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"
    assert "x-real-ip" not in headers and "x-forwarded-proto" not in headers
