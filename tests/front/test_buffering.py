"""Issue 9, input 2 and item 3: request bodies are read whole by the front before they go upstream, so slow
clients cost the front, not the endpoint's server (here a serial one: a slow body reaching it would stop it)."""
import json
import socket
import threading
import time

import pytest
import requests


def _trickle(port: int, path: str, stop: threading.Event) -> None:
    """A body announced at 100 kB and sent a few bytes at a time, faster than the body timeout, until `stop`."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"POST %s HTTP/1.1\r\nHost: kaos\r\nContent-Length: 100000\r\n\r\n" % path.encode())
            while not stop.wait(0.3):
                sock.sendall(b"x" * 10)
    except OSError:
        pass


@pytest.mark.parametrize("slow_clients", [2, 20])
def test_a_prediction_is_answered_while_slow_bodies_trickle(front_backend, endpoint, slow_clients):
    stop = threading.Event()
    threads = [threading.Thread(target=_trickle, args=(front_backend.port, f"/{endpoint}/invocations", stop))
               for _ in range(slow_clients)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.5)  # the slow clients have sent their heads and started their bodies
        for _ in range(3):
            # a generous bound against hanging (the server is serial: unbuffered, it would wait on a slow body)
            answer = requests.post(f"{front_backend.root}/{endpoint}/invocations", data=b"{}", timeout=5)
            assert answer.status_code == 200 and answer.json()["size"] == 2
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)


def test_a_chunked_body_reaches_the_endpoint_with_a_content_length(front_backend, endpoint):
    body = b"0123456789" * 20000  # 200 kB: past nothing, but chunked
    pieces = (body[start:start + 7000] for start in range(0, len(body), 7000))
    answer = requests.post(f"{front_backend.root}/{endpoint}/invocations?q=1", data=pieces, timeout=30)
    record = answer.json()
    assert answer.status_code == 200 and record["size"] == len(body) and record["path"] == "/invocations?q=1"
    assert record["headers"]["Content-Length"] == str(len(body)) and "Transfer-Encoding" not in record["headers"]
    assert "X-Token" not in record["headers"]


def test_a_body_past_the_memory_limit_goes_through_a_temporary_file(front_backend, endpoint):
    body = bytes(range(256)) * 3000  # 768 kB, below the test's 1 MB serve limit: over nothing
    answer = requests.post(f"{front_backend.root}/{endpoint}/invocations", data=body, timeout=30)
    assert answer.json()["size"] == len(body)
    big = b"y" * (3 * 1024 * 1024)  # to the API (its limit is 1 GB): past the 1 MB held in memory
    response = requests.post(f"{front_backend.url}data/frontws/features", data=big, timeout=60,
                             headers={"X-Token": front_backend.token, "Content-Type": "application/zip"})
    assert response.status_code == 400 and json.loads(response.text)["error_code"]  # read whole by the API
