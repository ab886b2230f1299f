"""The internal listener (KAOS_INTERNAL_PORT): a second port of `kaos-backend serve` where the front answers the
internal artifact routes only, so that a NetworkPolicy (which sees ports, not paths) can let workload pods reach
those and nothing else of the backend. On the public port nothing changes."""
import io
import zipfile

import pytest
import requests

from kaos_backend.config import Config, ConfigError
from kaos_backend.db import Database
from kaos_backend.executors.base import Artifact, WorkloadSpec
from kaos_backend.services.artifact_tokens import ArtifactTokens
from kaos_backend.storage import BlobStore
from tests.support.backend import BackendProcess, free_port

WAIT_LIMIT = 30.0  # a bound against hanging, never a speed claim


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    internal_port = free_port()
    server = BackendProcess(tmp_path_factory.mktemp("internal") / "data",
                            env={"KAOS_INTERNAL_PORT": str(internal_port)}).start()
    server.internal_root = f"http://127.0.0.1:{internal_port}"
    yield server
    server.stop()


@pytest.fixture(scope="module")
def workload(backend):
    """A serve workload with a stored source bundle, and a token for it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("tiny/model/serve", "#!/bin/sh\n")
    buffer.seek(0)
    digest = BlobStore(backend.data_dir / "blobs").put_stream(buffer).digest
    spec = WorkloadSpec(job_id="serve-ws-abc123", kind="serve", log="endpoints/serve-ws-abc123",
                        source=Artifact(Artifact.BUNDLE, digest, "tiny", f"tiny:{digest[:5]}"))
    database = Database(f"sqlite:///{backend.data_dir / 'kaos.db'}", create_tables=False)
    token = ArtifactTokens(database).issue(spec)
    database.dispose()
    return spec, token


def test_the_internal_port_serves_a_workload_its_artifacts(backend, workload):
    spec, token = workload
    url = f"{backend.internal_root}/internal/artifacts/{spec.job_id}/source"
    answer = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=WAIT_LIMIT)
    assert answer.status_code == 200, answer.text
    assert zipfile.ZipFile(io.BytesIO(answer.content)).namelist() == ["serve"]
    refused = requests.get(url, timeout=WAIT_LIMIT)
    assert (refused.status_code, refused.json()["error_code"]) == (401, "AUTHORIZATION_FAILURE")


@pytest.mark.parametrize("path", ["/api/health", "/api/workspace", "/serve-ws-abc123/invocations", "/",
                                  "/internal/", "/internal/artifactsX/a/b", "//api/health"])
def test_the_internal_port_answers_nothing_else(backend, path):
    answer = requests.get(backend.internal_root + path, headers={"X-Token": backend.token}, timeout=WAIT_LIMIT)
    assert answer.status_code in (400, 404), answer.text
    assert answer.json()["error_code"] in ("NOT_FOUND", "BAD_REQUEST")
    put = requests.put(backend.internal_root + "/api/workspace", data=b"x" * 100, timeout=WAIT_LIMIT,
                       headers={"X-Token": backend.token})
    assert put.status_code == 404


def test_the_public_port_is_unchanged(backend, workload):
    spec, token = workload
    assert backend.get("health", timeout=WAIT_LIMIT).status_code == 200
    answer = requests.get(f"{backend.root}/internal/artifacts/{spec.job_id}/source", timeout=WAIT_LIMIT,
                          headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200


@pytest.mark.parametrize("value", ["0", "70000", "http"])
def test_a_bad_internal_port_is_a_config_error(value):
    with pytest.raises(ConfigError, match="KAOS_INTERNAL_PORT"):
        Config.from_env({"KAOS_INTERNAL_PORT": value})
