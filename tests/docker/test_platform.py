"""A DOCKER platform stood up by the real CLI (`kaos build deploy -c DOCKER`) in a project directory, on the real
engine: the mnist template trains to a model and serves a prediction through the front, the seed page's three
stories tell what they tell on LOCAL (and the build's story the engine's own failing-step line), a training over
`--memory` is out of memory, a kill removes the containers, a backend restart finds its training again, a container
removed while the backend was down is a failed job with a reason, a data manifest is ingested and mounted at its
1.x path, a bundle written for kaos 1.x (nginx in front of gunicorn) trains and serves unchanged, a LOCAL platform
runs beside it, and `kaos destroy -c DOCKER` (the module's last test) removes exactly what kaos labelled for it."""
import configparser
import functools
import http.server
import json
import re
import threading
import uuid
from pathlib import Path

import pytest
import requests

from kaos_backend.config import platform_id
from kaos_backend.executors.docker_client import platform_filter, remove_platform
from kaos_backend.images import labels
from kaos_cli.local_platform import pid_alive, workload_pids
from tests.e2e import test_serve as local_serve_stories
from tests.e2e import test_train as local_train_stories
from tests.support import bundles_1x
from tests.support.docker_engine import TEST_LABEL, build_image, remove_images
from tests.support.platform import REPO, LocalPlatform, tiny_data_bundle, tiny_train_bundle, wait_for

pytestmark = pytest.mark.docker

TERMINAL = ("JOB_SUCCESS", "JOB_FAILURE", "JOB_KILLED")
MODEL_ID = re.compile(r"\b[0-9a-f]{5}_[0-9a-f]{5}:[0-9a-f]{6}\b")
DOCKERFILE = "ARG BASE_IMAGE=python:3.11-slim\nFROM ${BASE_IMAGE}\nWORKDIR /opt/program\nCOPY . .\n"
PAYLOAD = (REPO / "templates/mnist/test_payload.jpg").read_bytes()
EXPECTED = json.loads((REPO / "templates/mnist/test_payload.expected.json").read_text())
# The template bundles built here and in other modules (tests/support/docker_engine.py's template_layers).
MNIST_TRAIN, MNIST_SERVE = "mnist/model-train/mnist", "mnist/model-serve/mnist"
ENGINE_BUILD_ERROR = ("The command '/bin/sh -c pip install --no-cache-dir -r requirements.txt' returned a non-zero "
                      "code: 1")


class DockerPlatform(LocalPlatform):
    """A DOCKER platform deployed by the real CLI in a project directory (its context `DOCKER`), and what the tests
    ask of it beside LocalPlatform's: jobs by kind, the containers kaos made for it, a backend crash and restart."""

    def __init__(self, project: Path, base_image: str):
        super().__init__(project, cloud="DOCKER", deploy_options=["--base-image", base_image])
        self.platform = None  # the platform id (its data directory's), once deployed

    def deploy(self, force: bool = False):
        result = super().deploy(force=force)
        self.platform = platform_id(self.data_dir)
        return result

    def kaos(self, *args, **kwargs):
        kwargs.setdefault("timeout", 300)
        return super().kaos(*args, **kwargs)

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return int(self._context()["pid"])

    def get(self, path: str) -> requests.Response:
        return self.api("GET", path)

    def kind(self, workspace: str, kind: str) -> list:
        return self.jobs(workspace)[kind]

    def latest(self, workspace: str, kind: str) -> dict:
        return wait_for(lambda: (self.kind(workspace, kind) or [None])[0], what=f"a {kind} job")

    def terminal(self, workspace: str, job_id: str) -> dict:
        return wait_for(lambda: (lambda job: job if job["state"] in TERMINAL else None)(self.job(workspace, job_id)),
                        what=f"job {job_id} to end")

    def containers(self, engine, **label_values) -> list:
        wanted = [f"{name}={value}" for name, value in label_values.items()]
        return engine.containers.list(all=True, filters={"label": platform_filter(self.platform)["label"] + wanted})

    def kill_backend(self) -> None:
        """SIGKILL the backend's process group (API, front, scheduler), as a crash would, and wait until it is gone:
        the watchers and the containers, in sessions of their own and on the engine, go on."""
        pid = self.pid
        super().kill_backend()
        wait_for(lambda: not pid_alive(pid), timeout=30, what="the backend to die")

    def restart_backend(self) -> None:
        """`kaos build deploy -c DOCKER -f` on the same data directory, after kill_backend (a crash)."""
        self.deploy(force=True)


@pytest.fixture(scope="module")
def platform(docker_engine, base_image, tmp_path_factory):
    made = DockerPlatform(tmp_path_factory.mktemp("docker-project"), base_image)
    made.deploy()
    yield made
    made.destroy()  # test_destroy_... did it already: "has not been deployed"
    remove_platform(docker_engine, made.platform)  # whatever a failed test left, so that the engine stays clean


@pytest.fixture(scope="module")
def mnist_model(platform, template_layers):
    """The quick start's training on the platform (workspace mnist): the deploy's output, the build and training
    jobs, and the model id. (Its build takes the installed packages' layer from the session's template_layers.)"""
    template_layers(MNIST_TRAIN)
    platform.workspace("mnist")
    assert platform.kaos("template", "get", "--name", "mnist").code == 0
    deployed = platform.kaos("train", "deploy", "-s", "templates/mnist/model-train", "-d", "templates/mnist/data")
    assert deployed.code == 0, deployed
    build = platform.terminal("mnist", platform.latest("mnist", "building")["job_id"])
    assert build["state"] == "JOB_SUCCESS", platform.kaos("train", "build-logs", "-j", build["job_id"]).out
    job = platform.terminal("mnist", platform.latest("mnist", "training")["job_id"])
    assert job["state"] == "JOB_SUCCESS", platform.kaos("train", "logs", "-j", job["job_id"]).out
    model_id = MODEL_ID.search(platform.kaos("train", "info", "-j", job["job_id"]).out).group(0)
    return deployed, build, job, model_id


def test_deploy_writes_a_docker_context_whose_backend_runs_the_docker_executor(platform, base_image):
    context = platform._context()
    assert context["kind"] == "local" and context["executor"] == "docker"
    assert context["data_dir"] == str((platform.project / ".kaos" / "DOCKER" / "data").resolve())
    assert pid_alive(platform.pid)
    environ = (Path("/proc") / str(platform.pid) / "environ").read_bytes().split(b"\0")
    assert b"KAOS_EXECUTOR=docker" in environ and f"KAOS_BASE_IMAGE={base_image}".encode() in environ
    assert "Info - Active context is - DOCKER" in platform.kaos("build", "active").out
    assert re.search(r"\|\s*0\s*\|\s*DOCKER\s*\|\s*DOCKER\s*\|\s*local\s*\|", platform.kaos("build", "list").out)
    again = platform.kaos("build", "deploy", "-c", "DOCKER", "-y", "--port", str(platform.port))
    assert again.code == 1 and again.text.strip() == "Aborting - kaos backend is already built."


def test_mnist_trains_and_serves_a_prediction_through_the_front_and_kill_removes_the_endpoint(platform, mnist_model,
                                                                                               docker_engine,
                                                                                               template_layers):
    deployed, build, job, model_id = mnist_model
    template_layers(MNIST_SERVE)
    built = docker_engine.images.list(filters=platform_filter(platform.platform))
    tags = {tag for image in built for tag in image.tags}
    source_hash = re.search(r"/mnist:([0-9a-f]{5})", deployed.out).group(1)
    assert f"kaos-{platform.platform}/build-train-mnist:{source_hash}" in tags  # the platform's own name
    logs = platform.kaos("train", "logs", "-j", job["job_id"]).out
    assert "Loading training data from /pfs/data/features:" in logs and "kaos: the training ended: exit code 0" in logs

    assert platform.kaos("workspace", "set", "-n", "mnist").code == 0
    served = platform.kaos("serve", "deploy", "-s", "templates/mnist/model-serve", "-m", model_id)
    assert served.code == 0, served
    name = re.search(r"serve-mnist-[0-9a-f]{6}", served.out).group(0)

    def endpoint():
        listed = platform.get("inference/mnist").json()["response"]["endpoints"]
        return next((e for e in listed if e["name"] == name), None)
    wait_for(lambda: endpoint()["state"] in ("PIPELINE_RUNNING", "PIPELINE_FAILURE"), what="the endpoint to run")
    assert endpoint()["state"] == "PIPELINE_RUNNING", platform.kaos("serve", "logs", "-e", name).out
    answer = requests.post(f"{platform.root}/{name}/invocations", data=PAYLOAD, timeout=60)
    assert answer.status_code == 200 and answer.json() == EXPECTED
    [container] = platform.containers(docker_engine, **{labels.JOB: name})
    assert container.ports["8080/tcp"][0]["HostIp"] == "127.0.0.1"
    assert "Start inference server" in platform.kaos("serve", "logs", "-e", name).out

    assert platform.kaos("serve", "kill", "-e", name, input="y\n").code == 0
    wait_for(lambda: not platform.containers(docker_engine, **{labels.JOB: name}), what="the container removed")


def test_seed_build_error_shows_the_engine_s_failing_step_in_build_logs(platform):
    """The seed page's first story as on LOCAL (tests/e2e/test_train.py), and the engine's own failing-step line as
    the log's line and the job's reason, without the engine's colour codes."""
    local_train_stories.test_seed_build_error_shows_in_build_logs(platform)
    build = platform.kind("build-error", "building")[0]
    assert build["state"] == "JOB_FAILURE" and build["reason"] == ENGINE_BUILD_ERROR
    logs = platform.kaos("train", "build-logs", "-j", build["job_id"])
    assert logs.code == 0, logs
    assert ENGINE_BUILD_ERROR in logs.out and "\x1b[" not in logs.out
    assert "Invalid requirement: 'pandas=0.24'" in logs.out or "pandas=0.24" in logs.out


def test_seed_train_error_shows_the_syntax_error(platform, mnist_model):
    """The seed page's second story as on LOCAL (tests/e2e/test_train.py): the SyntaxError in `kaos train logs`
    (its image reuses the mnist training's installed packages)."""
    local_train_stories.test_seed_train_error_shows_the_syntax_error(platform)


def test_seed_serve_error_shows_the_traceback_in_serve_logs(platform, mnist_model, template_layers):
    """The seed page's third story as on LOCAL (tests/e2e/test_serve.py): the gateway's 502/503 names `kaos serve
    logs`, whose output has the traceback ending in the FileNotFoundError of model.docx; the endpoint gives up after
    5 failed starts with the reason."""
    template_layers(MNIST_SERVE)
    assert platform.kaos("workspace", "set", "-n", "mnist").code == 0
    local_serve_stories.test_seed_serve_error_fails_clearly_and_logs_the_traceback((platform, mnist_model[3]))


def tiny_code(root: Path, script: str) -> Path:
    """A train bundle of `script` whose image is the base image and the code (no packages to install)."""
    code = tiny_train_bundle(root, script)
    (code / "tiny" / "Dockerfile").write_text(DOCKERFILE)
    return code


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
    wait_for(lambda: "before" in platform.get(f"train/{workspace}/{job_id}/logs").text,
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
    [out] = (platform.data_dir / "jobs" / job_id / "out").iterdir()
    (out / "go").touch()  # the training goes on and ends while no backend runs
    log = platform.data_dir / "jobs" / job_id / "log"
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
        listed = platform.get("inference/old").json()["response"]["endpoints"]
        return next(e["state"] for e in listed if e["name"] == name)
    wait_for(lambda: state() in ("PIPELINE_RUNNING", "PIPELINE_FAILURE"), what="the endpoint to run")
    assert state() == "PIPELINE_RUNNING", platform.kaos("serve", "logs", "-e", name).out
    answer = requests.post(f"{platform.root}/{name}/invocations", data=b"6", timeout=60)
    assert answer.status_code == 200 and answer.json() == {"result": [3 * 7 * 6]}
    other = requests.get(f"{platform.root}/{name}/anything", timeout=60)
    assert other.status_code == 404 and other.text == "{}"  # nginx's answer: it is in front
    assert platform.kaos("serve", "kill", "-e", name, input="y\n").code == 0


def test_a_local_platform_runs_beside_it(platform):
    """LOCAL and DOCKER deployed at once from one project (ports of their own): both answer, each with its
    executor, and destroying LOCAL leaves DOCKER running."""
    local = LocalPlatform(platform.project)
    local.deploy()
    try:
        listed = platform.kaos("build", "list").out
        assert re.search(r"\|\s*DOCKER\s*\|", listed) and re.search(r"\|\s*LOCAL\s*\|", listed)
        assert local._context()["executor"] == "local" and platform._context()["executor"] == "docker"
        assert local.api("GET", "health").ok and platform.api("GET", "health").ok
    finally:
        assert local.destroy().code == 0
        assert platform.kaos("build", "set", "-c", "DOCKER").code == 0
    assert platform.api("GET", "health").ok and pid_alive(platform.pid)


TINY_SERVE = """#!/usr/bin/env python3
import http.server, os
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header('Content-Length', '2')
        self.end_headers()
        self.wfile.write(b'ok')
http.server.HTTPServer((os.environ['HOST'], int(os.environ['PORT'])), Handler).serve_forever()
"""
KINDS = ("containers", "images", "networks", "volumes")


def _tiny_serve_bundle(root: Path) -> Path:
    model = root / "tiny" / "model"
    model.mkdir(parents=True)
    (root / "tiny" / "Dockerfile").write_text(DOCKERFILE)
    for name, text in (("__init__.py", ""), ("requirements.txt", ""), ("web-requirements.txt", ""),
                       ("serve", TINY_SERVE)):
        (model / name).write_text(text)
    (model / "serve").chmod(0o755)
    return root


def _labelled(engine, kind: str, label: str) -> list:
    listing = getattr(engine, kind).list
    return listing(all=True, filters={"label": label}) if kind == "containers" else listing(filters={"label": label})


def _objects_of_others(engine, platform, base_image: str, tmp_path: Path) -> dict:
    """What the test makes on the engine that the destroy must leave: a running container, an image, a network and
    a volume labelled for ANOTHER kaos platform, and objects without kaos's labels whose names look like kaos's;
    all labelled TEST_LABEL. {kind: [id]}"""
    suffix = uuid.uuid4().hex[:8]
    other = platform_id(tmp_path / "another-platform")
    theirs = {labels.MANAGED: "true", labels.KIND: "train", labels.PLATFORM: other, TEST_LABEL: "true"}
    made = {kind: [] for kind in KINDS}
    made["containers"].append(engine.containers.run(
        base_image, ["python3", "-c", "import time; time.sleep(600)"], name=f"kaos-{other}-train-{suffix}",
        labels=theirs, detach=True).id)
    made["containers"].append(engine.containers.create(  # a look-alike of this platform's container names
        base_image, ["true"], name=f"kaos-{platform.platform}-mine-{suffix}", labels={TEST_LABEL: "true"}).id)
    context = tmp_path / "other-image"
    context.mkdir()
    (context / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n" + "".join(
        f'LABEL {name}="{value}"\n' for name, value in theirs.items()))
    image, _ = build_image(engine, context, f"build-train-other:{suffix}", base_image)
    made["images"].append(image.id)
    engine.images.get(base_image).tag("build-train-mnist", f"lookalike-{suffix}")  # the base image, renamed
    made["images"].append(f"build-train-mnist:lookalike-{suffix}")
    made["networks"].append(engine.networks.create(f"kaos-{other}-{suffix}", labels=theirs).id)
    made["networks"].append(engine.networks.create(f"kaos-{platform.platform}-{suffix}",
                                                   labels={TEST_LABEL: "true"}).id)
    made["volumes"].append(engine.volumes.create(f"kaos-{other}-{suffix}", labels=theirs).id)
    made["volumes"].append(engine.volumes.create(f"kaos-{platform.platform}-{suffix}",
                                                 labels={TEST_LABEL: "true"}).id)
    return made


def _remove_objects(engine, made: dict) -> None:
    import docker.errors

    for kind in KINDS:
        for key in made.get(kind, []):
            try:
                if kind == "images":
                    remove_images(engine, [key])
                elif kind == "containers":
                    engine.containers.get(key).remove(force=True)
                else:
                    getattr(engine, kind).get(key).remove()
            except docker.errors.NotFound:
                pass


def test_destroy_removes_exactly_what_kaos_labelled_for_this_platform(platform, docker_engine, base_image, tmp_path):
    """The module's last test: while a training and an endpoint of the platform run, `kaos destroy -c DOCKER -y`
    removes every container (running ones killed), image, network and volume labelled for it (a network and a
    volume are made here with its labels, as kaos could make them), and leaves the base image and everything of
    another platform's or the user's, look-alike names included; the context and the daemon are gone."""
    job_id = _started_training(platform, "doomed", tmp_path)
    assert platform.kaos("serve", "deploy", "-s", str(_tiny_serve_bundle(tmp_path / "serve"))).code == 0
    name = wait_for(lambda: next((e["name"] for e in platform.get("inference/doomed").json()["response"]["endpoints"]
                                  if e["state"] == "PIPELINE_RUNNING"), None), what="the endpoint to run")
    running = {container.labels[labels.JOB] for container in platform.containers(docker_engine)
               if container.status == "running"}
    assert {job_id, name} <= running
    assert docker_engine.images.list(filters=platform_filter(platform.platform))
    ours = {labels.MANAGED: "true", labels.KIND: "serve", labels.PLATFORM: platform.platform}
    docker_engine.networks.create(f"kaos-{platform.platform}-net", labels=ours)
    docker_engine.volumes.create(f"kaos-{platform.platform}-volume", labels=ours)
    pid, data_dir, label = platform.pid, platform.data_dir, f"{labels.PLATFORM}={platform.platform}"
    made = _objects_of_others(docker_engine, platform, base_image, tmp_path)
    try:
        destroyed = platform.kaos("destroy", "-c", "DOCKER", "-y")
        assert destroyed.code == 0, destroyed
        assert destroyed.out.strip() == "Info - Successfully destroyed kaos environment"

        for kind in KINDS:
            assert _labelled(docker_engine, kind, label) == [], kind
        for kind in KINDS:
            for key in made[kind]:
                getattr(docker_engine, kind).get(key)  # NotFound if the destroy took it
        assert docker_engine.containers.get(made["containers"][0]).status == "running"
        docker_engine.images.get(base_image)
        wait_for(lambda: not pid_alive(pid), timeout=30, what="the backend to stop")
        assert workload_pids(data_dir) == []  # no watcher, no runner left
        assert not (platform.project / ".kaos" / "DOCKER").exists()
        config = configparser.ConfigParser(interpolation=None)
        config.read(platform.project / ".kaos" / "config")
        assert not config.has_section("context:DOCKER") and "DOCKER" not in config["contexts"]["environments"]
        again = platform.kaos("destroy", "-c", "DOCKER", "-y")
        assert again.code == 1 and again.text.strip() == "Warning - kaos backend in DOCKER has not been deployed!"
    finally:
        _remove_objects(docker_engine, made)
