"""The API's access log names the client as the front door saw it (X-Forwarded-For, which the front sets on every
request it relays), not the API's own unix socket, which every request comes through."""
import time
import uuid

import requests


def access_line(backend, marker: str) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for line in backend.log().splitlines():
            if marker in line:
                return line
        time.sleep(0.1)
    raise AssertionError(f"no access log line for {marker}:\n{backend.log()[-3000:]}")


def test_the_access_log_names_the_client_not_the_socket(module_backend):
    marker = uuid.uuid4().hex
    answer = requests.get(f"{module_backend.url}workspace?probe={marker}",
                          headers={"X-Token": module_backend.token}, timeout=10)
    assert answer.status_code == 200
    line = access_line(module_backend, marker)
    assert " 127.0.0.1 " in f" {line} " and "unix:" not in line, line

    marker = uuid.uuid4().hex
    requests.get(f"{module_backend.url}workspace?probe={marker}",
                 headers={"X-Token": module_backend.token, "X-Forwarded-For": "10.9.8.7"}, timeout=10)
    line = access_line(module_backend, marker)
    assert "10.9.8.7, 127.0.0.1" in line, line  # what the client said, then the peer the front vouches for
