"""The internal artifact routes (api/artifacts.py) on a real backend, reached through its front door, with the pod
agent run as a local process as a pod runs it: a training's code, data and hyperparameters land in a /pfs-like
directory as the docker executor mounts them; ./train runs there and its output is handed back where the platform
reads models and metrics; an endpoint gets its code with the model beside it. Tokens: another workload's is 403,
none, an unknown, a revoked or an expired one 401; unsafe, conflicting and interrupted hand-backs leave nothing."""
import io
import json
import os
import socket
import subprocess
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from kaos_model.ids import new_hex6, new_job_id
from sqlalchemy import update

from kaos_backend.control.common import bundle_artifact, data_artifact
from kaos_backend.control.train_metrics import read_metrics
from kaos_backend.db import Database
from kaos_backend.executors.base import Artifact, Hyperparameters, WorkloadSpec
from kaos_backend.executors.docker_staging import DockerStaging
from kaos_backend.executors.pod_commands import fetch_command, train_and_upload_command
from kaos_backend.layout import DataLayout
from kaos_backend.models import ArtifactToken
from kaos_backend.services.artifact_tokens import ArtifactTokens
from kaos_backend.storage import BlobStore
from kaos_backend.untrusted import is_real_dir
from tests.backend.helpers import features_zip, zip_bytes
from tests.support.tiny_bundles import SERVE, TRAIN

PYTHON_37_BIN = Path("/root/.pyenv/versions/3.7.16/bin")
WAIT_LIMIT = 60.0  # a bound against hanging, never a speed claim


class Platform:
    """The backend's store and database as its executor sees them: bundles stored, workloads given tokens."""

    def __init__(self, backend):
        self.backend = backend
        self.data_dir = backend.data_dir
        self.store = BlobStore(self.data_dir / "blobs")
        self.database = Database(f"sqlite:///{self.data_dir / 'kaos.db'}", create_tables=False)
        self.tokens = ArtifactTokens(self.database)
        self.layout = DataLayout(self.data_dir)

    def bundle(self, kind: str, root: str, data: bytes) -> Artifact:
        """A stored bundle named as the controllers name it (control/common.py)."""
        info = self.store.put_stream(io.BytesIO(data))
        row = SimpleNamespace(kind=kind, blob_digest=info.digest, root_name=root,
                              glob_name=f"{root}:{info.hash5}" if kind == "features" else info.hash5)
        return data_artifact(row) if kind == "features" else bundle_artifact(row)

    def url(self, workload: str, artifact: str) -> str:
        return f"{self.backend.root}/internal/artifacts/{workload}/{artifact}"


def source_zip(files: dict) -> bytes:
    model = {f"tiny/model/{name}": text for name, text in files.items()}
    return zip_bytes({"tiny/Dockerfile": "FROM python:3.11-slim\n", "tiny/model/__init__.py": "",
                      "tiny/model/requirements.txt": "", **model})


@pytest.fixture(scope="module")
def platform(module_backend):
    made = Platform(module_backend)
    yield made
    made.database.dispose()


@pytest.fixture
def training(platform):
    """A training partition's spec, as the train controller makes it, and its token."""
    job, hex6 = new_job_id(), new_hex6()
    source = platform.bundle("source-train", "tiny", source_zip({"train": TRAIN}))
    data = platform.bundle("features", "features", features_zip())
    spec = WorkloadSpec(
        job_id=f"{job}-0", kind="train", log=f"jobs/{job}", preamble=[f"processing job {job}"], source=source,
        data=data, hyperparameters=Hyperparameters("c0ffe/scale=3.json", {"scale": 3}),
        output=Artifact.output_of(job, hex6), env={"KAOS_JOB_ID": job})
    return SimpleNamespace(spec=spec, job=job, hex6=hex6, token=platform.tokens.issue(spec, job=job),
                           out=platform.layout.output_dir(job, hex6))


def rebased(command, root: Path):
    """A fetch command with kaos's /pfs moved to `root` (a pod's paths in a test's directory)."""
    plan = json.loads(command[4])
    for item in plan["artifacts"]:
        item["dest"] = str(root) + item["dest"][len("/pfs"):]
    plan["dirs"] = [str(root) + path[len("/pfs"):] for path in plan["dirs"]]
    return command[:4] + [json.dumps(plan)]


def agent_env(token: str, python_bin: Path = None) -> dict:
    path = os.environ["PATH"] if python_bin is None else f"{python_bin}:{os.environ['PATH']}"
    return {"PATH": path, "KAOS_ARTIFACT_TOKEN": token}


def fetch(platform, spec, token, pfs: Path, python_bin: Path = None):
    command = rebased(fetch_command(spec, platform.backend.root), pfs)
    return subprocess.run(command, env=agent_env(token, python_bin), capture_output=True, text=True,
                          timeout=WAIT_LIMIT)


def tree(root: Path) -> dict:
    return {path.relative_to(root).as_posix(): None if path.is_dir() else path.read_bytes()
            for path in sorted(root.rglob("*"))}


def python_bins():
    return [pytest.param(None, id="python3"),
            pytest.param(PYTHON_37_BIN, id="python3.7", marks=[
                pytest.mark.allow_skip_in_ci,
                pytest.mark.skipif(not (PYTHON_37_BIN / "python3").exists(), reason="no Python 3.7")])]


@pytest.mark.parametrize("python_bin", python_bins())
def test_a_training_fetches_its_inputs_trains_and_hands_back_its_output(platform, training, tmp_path,
                                                                         python_bin):
    pfs = tmp_path / "pfs"
    fetched = fetch(platform, training.spec, training.token, pfs, python_bin)
    assert fetched.returncode == 0, fetched
    lines = fetched.stdout.splitlines()
    assert lines[0] == "starting to download data" and lines[1].startswith("finished downloading data after ")
    assert [line.split(" into ")[0] for line in lines[2:]] == [
        "kaos: downloaded source", "kaos: downloaded data", "kaos: downloaded hyperparameters"]
    data_name = training.spec.data.name
    assert tree(pfs) == {
        "code": None, "code/__init__.py": b"", "code/requirements.txt": b"", "code/train": TRAIN.encode(),
        "data": None, f"data/{data_name}": None, f"data/{data_name}/training": None,
        f"data/{data_name}/training/train.csv": b"1,2,3\n", f"data/{data_name}/validation": None,
        f"data/{data_name}/validation/valid.csv": b"4,5,6\n",
        "hyper": None, "hyper/c0ffe": None, "hyper/c0ffe/scale=3.json": b'{"scale": 3}',
        "out": None, f"out/{training.hex6}": None}
    assert os.access(pfs / "code" / "train", os.X_OK)

    command = train_and_upload_command(training.spec, platform.backend.root)
    out = str(pfs / "out" / training.hex6)
    command[8] = out  # the upload's directory: the pod's /pfs/out/<hex6> here
    env = dict(agent_env(training.token, python_bin), KAOS_TRAIN_HYPER=str(pfs / "hyper"),
               KAOS_TRAIN_DATA=str(pfs / "data" / data_name), KAOS_TRAIN_OUTPUT=out)
    trained = subprocess.run(command, cwd=pfs / "code", env=env, capture_output=True, text=True,
                             timeout=WAIT_LIMIT)
    assert trained.returncode == 0, trained
    assert trained.stdout.splitlines()[0] == "kaos: uploading the output"
    assert trained.stdout.splitlines()[1].startswith(f"kaos: uploaded {out}: 2 files, 18 bytes after ")
    # where the platform reads a training's result: the train controller's model check and metrics
    assert is_real_dir(training.out / "model") and (training.out / "model" / "scale.txt").read_text() == "3"
    assert read_metrics(training.out) == {"accuracy": 0.3}
    assert [path.name for path in training.out.parent.iterdir()] == [training.hex6]  # no temporary left


def test_the_fetched_layout_is_the_one_the_docker_executor_mounts(platform, training, tmp_path):
    fetched = fetch(platform, training.spec, training.token, tmp_path / "pfs")
    assert fetched.returncode == 0, fetched
    docker_spec = WorkloadSpec.from_dict({**training.spec.to_dict(), "output": Artifact.output_of(
        "d" * 32, training.hex6).__dict__})  # the same hex6, another job: docker's staging empties its output
    staged = DockerStaging(platform.data_dir).stage(docker_spec, tmp_path / "docker-home")
    for mount in staged.mounts:
        assert tree(Path(mount["Source"])) == tree(tmp_path / "pfs" / mount["Target"][len("/pfs/"):]), mount
    import tarfile
    with tarfile.open(fileobj=staged.archive) as archive:
        code = {member.name: archive.extractfile(member).read() for member in archive if member.isfile()}
    assert code == {name: content for name, content in tree(tmp_path / "pfs" / "code").items() if content is not None}
    assert staged.command == ["./train", f"/pfs/out/{training.hex6}"]


def test_an_endpoint_gets_its_code_with_the_trained_model_beside_it(platform, training, tmp_path):
    put = requests.put(platform.url(training.spec.job_id, "output"), timeout=WAIT_LIMIT,
                       data=zip_bytes({"model/scale.txt": "5", "metrics/metrics.json": "{}"}),
                       headers={"Authorization": f"Bearer {training.token}"})
    assert (put.status_code, put.json()) == (201, {"output": f"{training.job}/{training.hex6}", "files": 2,
                                                   "bytes": 3, "created": True})
    name = f"serve-ws-{new_hex6()}"
    spec = WorkloadSpec(job_id=name, kind="serve", log=f"endpoints/{name}",
                        source=platform.bundle("source-serve", "tiny", source_zip({"serve": SERVE,
                                                                                    "web-requirements.txt": ""})),
                        model=Artifact.output_of(training.job, training.hex6))
    fetched = fetch(platform, spec, platform.tokens.issue(spec), tmp_path / "pfs")
    assert fetched.returncode == 0, fetched
    assert sorted(tree(tmp_path / "pfs" / "code")) == ["__init__.py", "requirements.txt", "scale.txt", "serve",
                                                       "web-requirements.txt"]
    assert (tmp_path / "pfs" / "code" / "scale.txt").read_text() == "5"
    assert os.access(tmp_path / "pfs" / "code" / "serve", os.X_OK)


def test_a_notebook_fetches_what_the_docker_variant_mounts_and_seeds_its_work_directory(platform, training,
                                                                                         tmp_path):
    """Kubernetes' notebook pod: each attached data bundle and the model's whole output (model/ and metrics/) where
    the docker executor mounts them, its source's files into the work directory, an edited one kept."""
    put = _put(platform, training.spec.job_id, training.token,
               zip_bytes({"model/scale.txt": "5", "metrics/metrics.json": "{}"}))
    assert put.status_code == 201, put.text
    name = f"notebook-ws-{new_hex6()}"
    spec = WorkloadSpec(job_id=name, kind="notebook", log=f"notebooks/{name}",
                        source=platform.bundle("source-notebook", "tiny", source_zip({"notes.ipynb": "shipped"})),
                        attached=[training.spec.data], model=Artifact.output_of(training.job, training.hex6),
                        secrets={"JUPYTER_TOKEN": "not kept"}, base_url=f"/{name}/", env={"KAOS_WORKSPACE": "ws"})
    token = platform.tokens.issue(replace(spec, secrets={}))
    command = fetch_command(spec, platform.backend.root)
    plan = json.loads(command[4])
    for item in plan["artifacts"]:
        item["dest"] = str(tmp_path / "work") if item["dest"] == "/opt/program" else str(tmp_path) + item["dest"]
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "notes.ipynb").write_text("edited")
    fetched = subprocess.run(command[:4] + [json.dumps(plan)], env=agent_env(token), capture_output=True, text=True,
                             timeout=WAIT_LIMIT)
    assert fetched.returncode == 0, fetched
    assert (tmp_path / "work" / "notes.ipynb").read_text() == "edited"
    assert (tmp_path / "work" / "requirements.txt").exists()

    staged = DockerStaging(platform.data_dir).stage(spec, tmp_path / "docker-home")
    pfs_mounts = [mount for mount in staged.mounts if mount["Target"].startswith("/pfs/")]
    assert sorted(mount["Target"] for mount in pfs_mounts) == [f"/pfs/data/{training.spec.data.name}",
                                                               f"/pfs/out/{training.hex6}"]
    for mount in pfs_mounts:
        assert tree(Path(mount["Source"])) == tree(tmp_path / mount["Target"][1:]), mount
    assert _get(platform, name, "data-1", token).status_code == 404  # one data bundle only: data-0


def _get(platform, workload, artifact, token=None, headers=None):
    headers = headers if headers is not None else ({"Authorization": f"Bearer {token}"} if token else {})
    return requests.get(platform.url(workload, artifact), headers=headers, timeout=WAIT_LIMIT)


def _put(platform, workload, token, data: bytes):
    return requests.put(platform.url(workload, "output"), data=data, timeout=WAIT_LIMIT,
                        headers={"Authorization": f"Bearer {token}"} if token else {})


def test_a_token_of_another_job_is_forbidden(platform, training):
    other = platform.tokens.issue(WorkloadSpec(job_id=f"{new_job_id()}-0", kind="train", log="jobs/x"))
    for answer in (_get(platform, training.spec.job_id, "source", other),
                   _put(platform, training.spec.job_id, other, zip_bytes({"model/x": "1"}))):
        assert answer.status_code == 403, answer.text
        assert answer.json() == {"error_code": "FORBIDDEN",
                                 "message": f"The artifact token is not for {training.spec.job_id}"}
    assert not training.out.exists()


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer"}, {"Authorization": "Basic abc"},
                                     {"X-Token": "test-token"}, {"Authorization": "Bearer " + "0" * 32 + ".x"}],
                         ids=["none", "empty", "basic", "the-api-token", "unknown"])
def test_without_a_workload_token_the_routes_are_unauthorized(platform, training, headers):
    answer = _get(platform, training.spec.job_id, "source", headers=headers)
    assert answer.status_code == 401 and answer.json()["error_code"] == "AUTHORIZATION_FAILURE"
    answer = requests.put(platform.url(training.spec.job_id, "output"), data=b"x", headers=headers,
                          timeout=WAIT_LIMIT)
    assert answer.status_code == 401 and not training.out.exists()


def test_a_revoked_token_is_unauthorized(platform, training, tmp_path):
    assert _get(platform, training.spec.job_id, "hyperparameters", training.token).status_code == 200
    platform.tokens.revoke(training.job)
    answer = _get(platform, training.spec.job_id, "hyperparameters", training.token)
    assert (answer.status_code, answer.json()["message"]) == (401, "The artifact token was revoked: its job has "
                                                                   "ended")
    fetched = fetch(platform, training.spec, training.token, tmp_path / "pfs")
    assert fetched.returncode == 1 and fetched.stdout.splitlines()[-1] == (
        "kaos: could not download source: 401 UNAUTHORIZED: The artifact token was revoked: its job has ended")


def test_an_expired_token_is_unauthorized(platform, training):
    selector = training.token.split(".")[0]
    with platform.database.session_scope() as session:
        session.execute(update(ArtifactToken).where(ArtifactToken.selector == selector)
                        .values(expires_at=datetime.now(timezone.utc) - timedelta(seconds=1)))
    answer = _get(platform, training.spec.job_id, "source", training.token)
    assert (answer.status_code, answer.json()["message"]) == (401, "The artifact token has expired")


def test_an_artifact_the_spec_does_not_name_is_not_found(platform, training):
    for name in ("model", "output", "secrets", "..%2f..%2ftoken"):
        answer = _get(platform, training.spec.job_id, name, training.token)
        assert answer.status_code in (404, 400) and answer.json()["error_code"] in ("NOT_FOUND", "BAD_REQUEST"), name


def test_an_artifact_no_longer_stored_is_not_found(platform, training):
    platform.store.delete(training.spec.data.ref)
    answer = _get(platform, training.spec.job_id, "data", training.token)
    assert answer.status_code == 404 and "no longer stored" in answer.json()["message"]


@pytest.mark.parametrize("name", ["../x", "model/../../x", "/abs/x"])
def test_an_unsafe_output_is_refused_and_leaves_nothing(platform, training, name):
    answer = _put(platform, training.spec.job_id, training.token, zip_bytes({"model/a": "1", name: "evil"}))
    assert answer.status_code == 400 and answer.json()["error_code"] == "INVALID_BUNDLE", answer.text
    assert not training.out.parent.exists() or list(training.out.parent.iterdir()) == []
    assert not (training.out.parent.parent / "x").exists()


def test_a_second_output_is_accepted_only_when_identical(platform, training):
    first = zip_bytes({"model/scale.txt": "3", "metrics/": None})
    assert _put(platform, training.spec.job_id, training.token, first).status_code == 201
    again = _put(platform, training.spec.job_id, training.token, zip_bytes({"model/scale.txt": "3",
                                                                            "metrics/": None}))
    assert (again.status_code, again.json()["created"]) == (200, False)
    other = _put(platform, training.spec.job_id, training.token, zip_bytes({"model/scale.txt": "4"}))
    assert other.status_code == 409 and other.json()["error_code"] == "OUTPUT_EXISTS"
    assert (training.out / "model" / "scale.txt").read_text() == "3"
    assert sorted(path.name for path in training.out.parent.iterdir()) == [training.hex6]


def test_an_endpoint_hands_back_no_output(platform):
    name = f"serve-ws-{new_hex6()}"
    token = platform.tokens.issue(WorkloadSpec(job_id=name, kind="serve", log=f"endpoints/{name}"))
    answer = _put(platform, name, token, zip_bytes({"model/x": "1"}))
    assert answer.status_code == 404 and answer.json()["error_code"] == "NOT_FOUND"


def test_an_interrupted_upload_leaves_nothing(platform, training):
    body = zip_bytes({"model/big.bin": os.urandom(300_000)})
    head = (f"PUT /internal/artifacts/{training.spec.job_id}/output HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {training.token}\r\nContent-Type: application/zip\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", platform.backend.port), timeout=WAIT_LIMIT) as connection:
        connection.sendall(head + body[:len(body) // 2])
    deadline = time.monotonic() + WAIT_LIMIT  # the backend notices the cut, then cleans up
    while time.monotonic() < deadline and training.out.parent.exists() and any(training.out.parent.iterdir()):
        time.sleep(0.1)
    assert not training.out.exists()
    assert not training.out.parent.exists() or list(training.out.parent.iterdir()) == []
    # and the whole output still arrives afterwards
    assert _put(platform, training.spec.job_id, training.token, body).status_code == 201


def test_the_front_refuses_a_hand_back_without_a_token_before_its_body(platform, training):
    """The front reads no body for /internal/artifacts/ without a bearer token (as for /api/ without X-Token):
    a head announcing 100 MB is answered 401 at once, its body never sent."""
    head = (f"PUT /internal/artifacts/{training.spec.job_id}/output HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"X-Token: {platform.backend.token}\r\nContent-Length: {100 * 1024 * 1024}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", platform.backend.port), timeout=WAIT_LIMIT) as connection:
        connection.sendall(head)
        answer = b""
        while b"An artifact token is required" not in answer:
            chunk = connection.recv(65536)
            assert chunk, answer  # closed before the whole answer came
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 401 ")
    assert b"An artifact token is required" in answer


def test_a_manifests_ingested_files_are_a_trainings_data(platform, tmp_path):
    digest, job = "e" * 64, new_job_id()
    ingested = platform.layout.ingested_dir(digest)
    (ingested / "images").mkdir(parents=True)
    (ingested / "images" / "a.png").write_bytes(b"\x89PNG")
    spec = WorkloadSpec(job_id=f"{job}-0", kind="train", log=f"jobs/{job}",
                        source=platform.bundle("source-train", "tiny", source_zip({"train": TRAIN})),
                        data=Artifact(Artifact.INGESTED, digest, name="manifest:eeeee"),
                        output=Artifact.output_of(job, new_hex6()))
    fetched = fetch(platform, spec, platform.tokens.issue(spec, job=job), tmp_path / "pfs")
    assert fetched.returncode == 0, fetched
    assert tree(tmp_path / "pfs" / "data") == {"manifest:eeeee": None, "manifest:eeeee/images": None,
                                               "manifest:eeeee/images/a.png": b"\x89PNG"}
    assert list((tmp_path / "pfs" / "hyper").iterdir()) == []  # no hyperparameters: an empty /pfs/hyper
