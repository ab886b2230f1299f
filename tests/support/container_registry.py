"""A real container registry for tests, on 127.0.0.1: Debian's `docker-registry` (the CNCF distribution registry,
the one Docker Hub's API follows), started per test session with its storage in a temporary directory.

    container_registry   its address `127.0.0.1:<port>`; a Docker engine pushes there over plain HTTP, as it
                         treats 127.0.0.0/8 as an insecure registry by default (dockerd's `--insecure-registry`)

Without the binary the test is skipped, and FAILS when CI is set (`.ci/run` installs it)."""
import shutil
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from tests.support.backend import free_port
from tests.support.docker_engine import unavailable

START_WAIT = 30.0  # seconds: a bound against hanging, never a speed claim
CONFIG = """version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: {address}
"""


@pytest.fixture(scope="session")
def container_registry(tmp_path_factory, docker_engine):
    binary = shutil.which("docker-registry")
    if binary is None:
        unavailable("Debian's docker-registry is not installed (apt-get install docker-registry)")
    home = tmp_path_factory.mktemp("registry")
    address = f"127.0.0.1:{free_port()}"
    (home / "config.yml").write_text(CONFIG.format(root=home / "storage", address=address))
    with open(home / "log", "wb") as log:
        process = subprocess.Popen([binary, "serve", str(home / "config.yml")], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_WAIT
        while not answers(address):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the registry did not start: {(home / 'log').read_text()[-2000:]}", pytrace=False)
            time.sleep(0.1)
        yield address
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def answers(address: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{address}/v2/", timeout=2) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def tags(address: str, repository: str) -> list:
    """The tags the registry holds for `repository` (GET /v2/<name>/tags/list); [] for an unknown repository."""
    import json
    try:
        with urllib.request.urlopen(f"http://{address}/v2/{repository}/tags/list", timeout=10) as response:
            return json.load(response).get("tags") or []
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return []
        raise
