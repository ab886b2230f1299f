"""A backend with KAOS_EXECUTOR=docker on the real engine, driven by the real CLI: the mnist template trains to a
model and serves a prediction through the front, a failing build shows the engine's failing-step line in `kaos
train build-logs` and as the job's reason, a training over `--memory` is out of memory, a kill removes the
containers, a backend restart finds its training again, a container removed while the backend was down is a
failed job with a reason, a data manifest is ingested and mounted at its 1.x path, and a bundle written for kaos 1.x
(nginx in front of gunicorn) trains and serves unchanged."""
import functools
import http.server
import json
import os
import re
import shutil
import signal
import threading
import uuid
from pathlib import Path

import pytest
import requests

from kaos_backend.config import platform_id
from kaos_backend.executors.docker_client import platform_filter, remove_platform_containers
from kaos_backend.images import labels
from tests.support import bundles_1x
from tests.support.backend import BackendProcess
from tests.support.cli import kaos
from tests.support.platform import REPO, tiny_data_bundle, tiny_train_bundle, wait_for

pytestmark = pytest.mark.docker

TERMINAL = ("JOB_SUCCESS", "JOB_FAILURE", "JOB_KILLED")
MODEL_ID = re.compile(r"\b[0-9a-f]{5}_[0-9a-f]{5}:[0-9a-f]{6}\b")
DOCKERFILE = "ARG BASE_IMAGE=python:3.11-slim\nFROM ${BASE_IMAGE}\nWORKDIR /opt/program\nCOPY . .\n"
PAYLOAD = (REPO / "templates/mnist/test_payload.jpg").read_bytes()
EXPECTED = json.loads((REPO / "templates/mnist/test_payload.expected.json").read_text())


class DockerPlatform:
    """A backend running its workloads on the engine, and a kaos project connected to it."""

    def __init__(self, root: Path, base_image: str):
        self.root = root
        self.env = {"KAOS_EXECUTOR": "docker", "KAOS_BASE_IMAGE": base_image}
        self.backend = BackendProcess(root / "data", env=self.env).start()
        self.project = root / "project"
        self.project.mkdir()
        assert self.kaos("init", "-e", self.backend.url, "-t", self.backend.token).code == 0

    @property
    def platform(self) -> str:
        return platform_id(self.backend.data_dir)

    def kaos(self, *args, input=None):
        return kaos(self.project, *args, input=input, timeout=300)

    def workspace(self, name: str) -> str:
        assert self.kaos("workspace", "create", "-n", name).code == 0
        return name

    def jobs(self, workspace: str, kind: str) -> list:
        return self.backend.get(f"train/{workspace}", timeout=30).json()["response"][kind]

    def latest(self, workspace: str, kind: str) -> dict:
        return wait_for(lambda: (self.jobs(workspace, kind) or [None])[0], what=f"a {kind} job")

    def job(self, workspace: str, job_id: str) -> dict:
        return self.backend.get(f"job/{workspace}/{job_id}", timeout=30).json()["response"]

    def terminal(self, workspace: str, job_id: str) -> dict:
        return wait_for(lambda: (lambda job: job if job["state"] in TERMINAL else None)(self.job(workspace, job_id)),
                        what=f"job {job_id} to end")

    def containers(self, engine, **label_values) -> list:
        wanted = [f"{name}={value}" for name, value in label_values.items()]
        return engine.containers.list(all=True, filters={"label": platform_filter(self.platform)["label"] + wanted})

    def kill_backend(self) -> None:
        """SIGKILL the backend's process group (API, front, scheduler), as a crash would: the watchers and the
        containers, in sessions of their own and on the engine, go on."""
        os.killpg(self.backend.process.pid, signal.SIGKILL)
        self.backend.process.wait(timeout=30)

    def restart_backend(self) -> None:
        self.backend = BackendProcess(self.backend.data_dir, env=self.env, port=self.backend.port).start()

    def destroy(self, engine) -> None:
        self.backend.stop()
        remove_platform_containers(engine, self.platform)
        for image in engine.images.list(filters=platform_filter(self.platform)):
            engine.images.remove(image.id, force=True)


@pytest.fixture(scope="module")
def platform(docker_engine, base_image, tmp_path_factory):
    made = DockerPlatform(tmp_path_factory.mktemp("docker-platform"), base_image)
    yield made
    made.destroy(docker_engine)


def tiny_code(root: Path, script: str) -> Path:
    """A train bundle of `script` whose image is the base image and the code (no packages to install)."""
    code = tiny_train_bundle(root, script)
    (code / "tiny" / "Dockerfile").write_text(DOCKERFILE)
    return code


def test_mnist_trains_and_serves_a_prediction_through_the_front_and_kill_removes_the_endpoint(platform,
                                                                                               docker_engine):
    platform.workspace("mnist")
    assert platform.kaos("template", "get", "--name", "mnist").code == 0
    deployed = platform.kaos("train", "deploy", "-s", "templates/mnist/model-train", "-d", "templates/mnist/data")
    assert deployed.code == 0, deployed
    build = platform.terminal("mnist", platform.latest("mnist", "building")["job_id"])
    assert build["state"] == "JOB_SUCCESS", platform.kaos("train", "build-logs", "-j", build["job_id"]).out
    job = platform.terminal("mnist", platform.latest("mnist", "training")["job_id"])
    assert job["state"] == "JOB_SUCCESS", platform.kaos("train", "logs", "-j", job["job_id"]).out
    built = docker_engine.images.list(filters=platform_filter(platform.platform))
    tags = {tag for image in built for tag in image.tags}
    source_hash = re.search(r"/mnist:([0-9a-f]{5})", deployed.out).group(1)
    assert f"build-train-mnist:{source_hash}" in tags
    logs = platform.kaos("train", "logs", "-j", job["job_id"]).out
    assert "Loading training data from /pfs/data/features:" in logs and "kaos: the training ended: exit code 0" in logs
    info = platform.kaos("train", "info", "-j", job["job_id"])
    model_id = MODEL_ID.search(info.out).group(0)

    served = platform.kaos("serve", "deploy", "-s", "templates/mnist/model-serve", "-m", model_id)
    assert served.code == 0, served
    name = re.search(r"serve-mnist-[0-9a-f]{6}", served.out).group(0)

    def endpoint():
        listed = platform.backend.get("inference/mnist", timeout=30).json()["response"]["endpoints"]
        return next((e for e in listed if e["name"] == name), None)
    wait_for(lambda: endpoint()["state"] in ("PIPELINE_RUNNING", "PIPELINE_FAILURE"), what="the endpoint to run")
    assert endpoint()["state"] == "PIPELINE_RUNNING", platform.kaos("serve", "logs", "-e", name).out
    answer = requests.post(f"{platform.backend.root}/{name}/invocations", data=PAYLOAD, timeout=60)
    assert answer.status_code == 200 and answer.json() == EXPECTED
    [container] = platform.containers(docker_engine, **{labels.JOB: name})
    assert container.ports["8080/tcp"][0]["HostIp"] == "127.0.0.1"
    assert "Start inference server" in platform.kaos("serve", "logs", "-e", name).out

    assert platform.kaos("serve", "kill", "-e", name, input="y\n").code == 0
    wait_for(lambda: not platform.containers(docker_engine, **{labels.JOB: name}), what="the container removed")


def test_a_failing_build_shows_the_engine_s_line_in_build_logs_and_as_its_reason(platform, tmp_path):
    platform.workspace("build-error")
    source = tmp_path / "typo"
    shutil.copytree(REPO / "templates/mnist/model-train/mnist", source / "mnist")
    requirements = source / "mnist" / "model" / "requirements.txt"
    requirements.write_text(requirements.read_text() + "pandas=0.24\n")
    data = tiny_data_bundle(tmp_path / "data")
    assert platform.kaos("train", "deploy", "-s", str(source), "-d", str(data)).code == 0
    build = platform.terminal("build-error", platform.latest("build-error", "building")["job_id"])
    engine_line = "The command '/bin/sh -c pip install --no-cache-dir -r requirements.txt' returned a non-zero code: 1"
    assert build["state"] == "JOB_FAILURE" and build["reason"] == engine_line
    logs = platform.kaos("train", "build-logs", "-j", build["job_id"])
    assert logs.code == 0, logs
    assert engine_line in logs.out and "\x1b[" not in logs.out
    assert "Invalid requirement: 'pandas=0.24'" in logs.out or "pandas=0.24" in logs.out


GREEDY = ("import os\nchunks = []\nfor step in range(400):\n    chunks.append(bytearray(1024 * 1024))\n"
          "    print('allocated', step + 1, 'MiB', flush=True)\n"
          "os.makedirs(os.environ['KAOS_TRAIN_OUTPUT'] + '/model')\n")


def test_a_training_over_its_memory_limit_is_out_of_memory(platform, tmp_path):
    platform.workspace("greedy")
    code, data = tiny_code(tmp_path / "code", GREEDY), tiny_data_bundle(tmp_path / "data")
    assert platform.kaos("train", "deploy", "-s", str(code), "-d", str(data), "--memory", "50Mi").code == 0
    job = platform.terminal("greedy", platform.latest("greedy", "training")["job_id"])
    assert job["state"] == "JOB_FAILURE" and job["reason"] == "out of memory (limit 50Mi)", job
    assert "kaos: the training ended: out of memory (limit 50Mi)" in platform.kaos("train", "logs", "-j",
                                                                                    job["job_id"]).out


WAITS_FOR_GO = ("import os, sys, time\nprint('before', flush=True)\n"
                "while not os.path.exists(os.path.join(sys.argv[1], 'go')):\n    time.sleep(0.05)\n"
                "print('after', flush=True)\nos.makedirs(sys.argv[1] + '/model')\n")


def _started_training(platform, workspace: str, tmp_path: Path, script: str = WAITS_FOR_GO) -> str:
    platform.workspace(workspace)
    code, data = tiny_code(tmp_path / "code", script), tiny_data_bundle(tmp_path / f"data-{uuid.uuid4().hex[:4]}")
    assert platform.kaos("train", "deploy", "-s", str(code), "-d", str(data)).code == 0
    job_id = platform.latest(workspace, "training")["job_id"]
    wait_for(lambda: "before" in platform.backend.get(f"train/{workspace}/{job_id}/logs", timeout=30).text,
             what="the training to start")
    return job_id


def test_kill_removes_the_training_s_containers(platform, docker_engine, tmp_path):
    job_id = _started_training(platform, "killed", tmp_path)
    assert platform.containers(docker_engine, **{labels.JOB: job_id})
    assert platform.kaos("train", "kill", "-j", job_id, input="y\n").code == 0
    assert platform.terminal("killed", job_id)["state"] == "JOB_KILLED"
    wait_for(lambda: not platform.containers(docker_engine, **{labels.JOB: job_id}), what="the containers removed")


def test_a_backend_restart_during_a_training_finds_it_again_and_its_log_is_whole(platform, tmp_path):
    job_id = _started_training(platform, "restart", tmp_path)
    platform.kill_backend()
    [out] = (platform.backend.data_dir / "jobs" / job_id / "out").iterdir()
    (out / "go").touch()  # the training goes on and ends while no backend runs
    log = platform.backend.data_dir / "jobs" / job_id / "log"
    wait_for(lambda: "kaos: the training ended: exit code 0" in log.read_text(), what="the training to end alone")
    platform.restart_backend()
    assert platform.terminal("restart", job_id)["state"] == "JOB_SUCCESS"
    texts = [line.split("] ", 1)[1] for line in platform.kaos("train", "logs", "-j", job_id).out.splitlines()
             if line.startswith("[")]
    assert texts.count("before") == 1 and texts.count("after") == 1
    assert texts.index("beginning to run user code") < texts.index("before") < texts.index("after")


def test_a_container_removed_while_the_backend_was_down_is_a_failed_job_with_a_reason(platform, docker_engine,
                                                                                     tmp_path):
    job_id = _started_training(platform, "removed", tmp_path)
    platform.kill_backend()
    for container in platform.containers(docker_engine, **{labels.JOB: job_id}):
        container.remove(force=True)  # as someone's `docker rm -f`, or a pruned engine
    platform.restart_backend()
    job = platform.terminal("removed", job_id)
    assert job["state"] == "JOB_FAILURE" and job["reason"].startswith("vanished: its container is gone"), job
    assert f"kaos: the training ended: {job['reason']}" in platform.kaos("train", "logs", "-j", job_id).out


READS_MANIFEST_DATA = ("import os, sys\ndata = os.environ['KAOS_TRAIN_DATA']\nprint('data at', data, flush=True)\n"
                       "print('rows', open(os.path.join(data, 'training', 'x.csv')).read().strip(), flush=True)\n"
                       "os.makedirs(sys.argv[1] + '/model')\n")


@pytest.fixture
def csv_server(tmp_path):
    """A CSV file served on 127.0.0.1 from a thread of the test process; its URL."""
    root = tmp_path / "served"
    root.mkdir()
    (root / "x.csv").write_text("1,2,3\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/x.csv"
    server.shutdown()
    server.server_close()


def test_a_manifest_is_ingested_on_this_machine_and_mounted_at_its_1x_path(platform, csv_server, tmp_path):
    """The ingestion (a download into the data directory, not user code) runs as the local executor runs it;
    the training reads its files at /pfs/data/manifest:<hash5>."""
    platform.workspace("manifest")
    manifest = tmp_path / "data.mf"
    manifest.write_text(json.dumps({"url": csv_server, "path": "training/x.csv"}) + "\n")
    code = tiny_code(tmp_path / "code", READS_MANIFEST_DATA)
    assert platform.kaos("train", "deploy", "-s", str(code), "-m", str(manifest)).code == 0
    ingestion = platform.terminal("manifest", platform.latest("manifest", "ingesting")["job_id"])
    assert ingestion["state"] == "JOB_SUCCESS", ingestion
    job = platform.terminal("manifest", platform.latest("manifest", "training")["job_id"])
    assert job["state"] == "JOB_SUCCESS", platform.kaos("train", "logs", "-j", job["job_id"]).out
    logs = platform.kaos("train", "logs", "-j", job["job_id"]).out
    assert re.search(r"data at /pfs/data/manifest:[0-9a-f]{5}\n", logs) and "rows 1,2,3" in logs


def test_a_1x_bundle_trains_and_serves_unchanged(platform, docker_engine, tmp_path):
    """A train reading /pfs/data and /pfs/hyper and writing /pfs/out/<hex6>, a serve running nginx on 8080 in front
    of gunicorn on a unix socket (tests/support/bundles_1x.py), with none of kaos 2's variables."""
    platform.workspace("old")
    hyper = tmp_path / "params.json"
    hyper.write_text(json.dumps({"scale": [7]}))
    train, data = bundles_1x.train_bundle(tmp_path / "train"), tiny_data_bundle(tmp_path / "data", marker="3")
    assert platform.kaos("train", "deploy", "-s", str(train), "-d", str(data), "-h", str(hyper)).code == 0
    job = platform.terminal("old", platform.latest("old", "training")["job_id"])
    assert job["state"] == "JOB_SUCCESS", platform.kaos("train", "logs", "-j", job["job_id"]).out
    assert re.search(r"training on /pfs/data/features:[0-9a-f]{5} with \{'scale': 7\}",
                     platform.kaos("train", "logs", "-j", job["job_id"]).out)
    info = platform.kaos("train", "info", "-j", job["job_id"]).out
    model_id = re.search(r"\b[0-9a-f]{5}_[0-9a-f]{5}_[0-9a-f]{5}:[0-9a-f]{6}\b", info).group(0)

    served = platform.kaos("serve", "deploy", "-s", str(bundles_1x.serve_bundle(tmp_path / "serve")), "-m", model_id)
    assert served.code == 0, served
    name = re.search(r"serve-old-[0-9a-f]{6}", served.out).group(0)

    def state():
        listed = platform.backend.get("inference/old", timeout=30).json()["response"]["endpoints"]
        return next(e["state"] for e in listed if e["name"] == name)
    wait_for(lambda: state() in ("PIPELINE_RUNNING", "PIPELINE_FAILURE"), what="the endpoint to run")
    assert state() == "PIPELINE_RUNNING", platform.kaos("serve", "logs", "-e", name).out
    answer = requests.post(f"{platform.backend.root}/{name}/invocations", data=b"6", timeout=60)
    assert answer.status_code == 200 and answer.json() == {"result": [3 * 7 * 6]}
    other = requests.get(f"{platform.backend.root}/{name}/anything", timeout=60)
    assert other.status_code == 404 and other.text == "{}"  # nginx's answer: it is in front
    assert platform.kaos("serve", "kill", "-e", name, input="y\n").code == 0
