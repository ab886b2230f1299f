"""The executor contract (kaos_backend/executors/base.py), checked through the public contract alone on every
registered kind of executor: executors come from the registry as the configuration chooses them, workloads are
bundles in the platform's blob store named by their specs, logs are read with `logs()`, and outputs are read where
the platform keeps them (DataLayout.output_dir). What a kind needs besides to be tested is its entry in KINDS: its
configurations (the local executor runs twice: in a cgroup of its own where the machine allows it, and under its
runner as child subreaper; the docker executor on the engine the `base_image` fixture names, skipped without one
and failed in CI), how a crash makes one of its workloads vanish (the local runner killed; the container removed),
and what to clean up after a test.

Whether a workload's processes still run is read from heartbeats: each process appends to a file of its own in
the training's output through a descriptor it opened once, so nothing but its end stops it."""
import http.client
import json
import os
import signal
import time
import uuid
from dataclasses import dataclass
from typing import Callable, Dict, Set

import pytest

from kaos_backend.config import Config, platform_id
from kaos_backend.executors import registry
from kaos_backend.executors.base import VANISHED, Artifact, ArtifactMissing, Hyperparameters, WorkloadSpec
from kaos_backend.executors.containment import stop_platform
from tests.support.executor_platform import ExecutorPlatform
from tests.support.kube.fixtures import module_kube_cluster  # noqa: F401 (a fixture: the kubernetes kind's)

WAIT_LIMIT = 60.0  # a bound against hanging, never a speed claim
HEX6 = "abcdef"


@dataclass
class Kind:
    variants: Dict[str, dict]             # variant id -> Config overrides
    vanish: Callable[[Config, dict], None]  # make the workload of this executor state disappear as a crash would
    cleanup: Callable[[Config], None]     # stop whatever a failed test left running
    needs: Callable = lambda request, data: {}  # (pytest request, data dir) -> more Config overrides, from the
                                                # fixtures it needs
    teardown: Callable[[Config], None] = lambda config: None  # remove what the module made (images)
    live: Callable = None                 # (Platform, spec) -> where a running training writes its output, seen
                                          # from here (None: where the platform keeps outputs)


def _kill_the_runner(config: Config, state: dict) -> None:
    os.kill(state["pid"], signal.SIGKILL)  # the runner, as a crash or an OOM kill of it would


def _engine():
    from kaos_backend.executors.docker_client import engine
    return engine()


def _remove_the_container(config: Config, state: dict) -> None:
    _engine().api.remove_container(state["container"], force=True)  # as someone's `docker rm -f` would


def _remove_the_containers(config: Config) -> None:
    from kaos_backend.executors.docker_client import remove_platform_containers
    remove_platform_containers(_engine(), platform_id(config.data_dir))


def _remove_the_images(config: Config) -> None:
    from kaos_backend.executors.docker_client import platform_filter
    for image in _engine().images.list(filters=platform_filter(platform_id(config.data_dir))):
        _engine().images.remove(image.id, force=True)


def _kube_platform(request, data) -> dict:
    """A kubernetes platform on the module's fake cluster (tests/support/kube): the fake's kubelet runs its pods
    here, in the virtualenvs the `local-venv` image builder makes; its pods fetch from and hand back to the
    backend's app serving the internal artifact routes of the platform's data directory."""
    from tests.support.kube_platform import ArtifactServer, kube_config, venv_images
    cluster = request.getfixturevalue("module_kube_cluster")
    cluster.kubelet.images = venv_images(data)
    server = ArtifactServer(Config.from_env({}, data_dir=data))
    request.addfinalizer(server.stop)
    overrides = kube_config(cluster, data.parent / "kubeconfig", server.url)
    del overrides["executor"]  # the fixture's
    return overrides


def _delete_the_job(config: Config, state: dict) -> None:
    from kaos_backend.executors.kubernetes_client import apis
    apis(config)[1].delete_namespaced_job(state["name"], state["namespace"], propagation_policy="Background")


def _delete_the_platform(config: Config) -> None:
    from tests.support.kube_platform import delete_platform
    delete_platform(config)


def _forget_the_cluster(config: Config) -> None:
    from kaos_backend.executors.kubernetes_cluster import close_all
    close_all()


def _in_the_pod(platform, spec):
    from tests.support.kube_platform import live_output
    return live_output(platform.request.getfixturevalue("module_kube_cluster"), spec) or platform.output(spec)


KINDS = {
    "local": Kind({"auto": {"containment": "auto"}, "subreaper": {"containment": "subreaper"}},
                  _kill_the_runner, lambda config: stop_platform(platform_id(config.data_dir))),
    # The Docker engine of this machine (skipped without one, failed in CI: tests/support/docker_engine.py), the
    # builds on the base image the fixture makes (no registry here).
    "docker": Kind({"engine": {}}, _remove_the_container, _remove_the_containers,
                   needs=lambda request, data: {"base_image": request.getfixturevalue("base_image")},
                   teardown=_remove_the_images),
    # The fake cluster (tests/support/kube; root, as CI runs): a Job's deletion is the crash; a running
    # training's output is in its pod's volume until it is handed back.
    "kubernetes": Kind({"fake": {}}, _delete_the_job, _delete_the_platform, needs=_kube_platform,
                       teardown=_forget_the_cluster, live=_in_the_pod),
}
PARAMS = [pytest.param((kind, variant), id=f"{kind}-{variant}")
          for kind in registry.kinds() for variant in KINDS[kind].variants]  # a kind without an entry fails here


class Platform(ExecutorPlatform):
    """One kind of executor over a data directory of its own, and the image the test's workloads run in."""

    def __init__(self, config: Config, kind: Kind):
        super().__init__(config)
        self.kind = kind
        self.features = self.bundle({"features/training/a.csv": "1,2,3\n"}, "features")

    def source(self, script: str = "", name: str = "train") -> Artifact:
        files = {"bundle/Dockerfile": "ARG BASE_IMAGE=python:3.11-slim\nFROM ${BASE_IMAGE}\n",
                 "bundle/model/requirements.txt": ""}
        if script:
            files[f"bundle/model/{name}"] = "#!/usr/bin/env python3\n" + script
        return self.bundle(files, "bundle")

    def training(self, script: str, job: str = None, **extra) -> WorkloadSpec:
        """A training of `script` (Python) on the features bundle, output `<job>/HEX6`."""
        job = job or uuid.uuid4().hex
        return WorkloadSpec(job_id=f"{job}-0", kind="train", log=f"jobs/{job}", preamble=[f"processing job {job}"],
                            source=self.source(script), data=self.features, output=Artifact.output_of(job, HEX6),
                            image=self.image, **extra)

    def output(self, spec: WorkloadSpec):
        """Where the platform keeps the training's output (delivered by the time its end is reported)."""
        return self.layout.output_dir(*spec.output.output_parts())

    def live(self, spec: WorkloadSpec):
        """Where the running training writes its output, as this test sees it."""
        return self.kind.live(self, spec) if self.kind.live else self.output(spec)


@pytest.fixture(scope="module", params=PARAMS)
def platform(request, tmp_path_factory):
    kind_name, variant = request.param
    kind = KINDS[kind_name]
    data = tmp_path_factory.mktemp(f"{kind_name}-{variant}") / "data"
    config = Config.from_env({}, data_dir=data, executor=kind_name, **kind.variants[variant],
                             **kind.needs(request, data))
    platform = Platform(config, kind)
    platform.request = request
    build = WorkloadSpec(job_id="b" * 32, kind="build", log=f"jobs/{'b' * 32}", source=platform.source(),
                         requirements=["requirements.txt"])
    executor = platform.executor()
    platform.image = executor.build(build)
    assert _wait_for(lambda: executor.poll() is not None, timeout=600) and executor.poll() == 0, \
        "\n".join(executor.logs())
    assert executor.is_image_ready(platform.image) and platform.executor().image_for(build) == platform.image
    yield platform
    kind.cleanup(config)
    kind.teardown(config)


@pytest.fixture(autouse=True)
def cleanup(platform):
    yield
    platform.kind.cleanup(platform.config)


def _wait_for(predicate, timeout=WAIT_LIMIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value is not None and value is not False:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def _texts(executor):
    return [line.split("] ", 1)[1] for line in executor.logs()]


# Appends a byte to the file named argv[1] in the output every 50 ms, through a descriptor opened once.
BEAT = """
import os, sys, time
fd = os.open(os.path.join(os.environ["KAOS_TRAIN_OUTPUT"], sys.argv[1]), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
while True:
    os.write(fd, b".")
    time.sleep(0.05)
"""

# A training that beats itself ("main") and starts a child in a session of its own ("child") and a double-forked
# daemon ("daemon"), as one that starts a server or a data loader does; then sleeps $SLEEP seconds.
SPAWNER = f"""
import os, subprocess, sys, threading, time
BEAT = {BEAT!r}
subprocess.Popen([sys.executable, "-c", BEAT, "child"], start_new_session=True)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c", BEAT, "daemon"])
    os._exit(0)
sys.argv[1:] = ["main"]
threading.Thread(target=lambda: exec(BEAT, {{"__name__": "beat"}}), daemon=True).start()
out = os.environ["KAOS_TRAIN_OUTPUT"]
while not all(os.path.exists(os.path.join(out, name)) for name in ("main", "child", "daemon")):
    time.sleep(0.05)
print("spawned", flush=True)
time.sleep(float(os.environ["SLEEP"]))
"""
EVERY_BEAT = {"main", "child", "daemon"}


def _beating(out, names=EVERY_BEAT, window: float = 1.0) -> Set[str]:
    """The heartbeats in `out` that grew within `window` seconds."""
    def sizes():
        return {name: (out / name).stat().st_size if (out / name).exists() else 0 for name in names}
    before = sizes()
    time.sleep(window)
    after = sizes()
    return {name for name in names if after[name] > before[name]}


def test_start_poll_and_log(platform):
    executor = platform.executor()
    spec = platform.training("print('hello')\nimport sys\nsys.exit(3)")
    assert executor.start(spec) is None  # a training listens nowhere
    assert _wait_for(lambda: executor.poll()) == 3
    lines = list(executor.logs())
    assert all(line.startswith("[20") for line in lines)
    assert "hello" in _texts(executor)
    assert executor.reason() == "exit code 3 (last output: hello)"
    assert _texts(executor)[-1] == "kaos: the training ended: exit code 3 (last output: hello)"


def test_the_log_starts_with_the_preamble_and_the_staging_then_the_user_code(platform):
    executor = platform.executor()
    spec = platform.training("print('user code')")
    executor.start(spec)
    _wait_for(lambda: executor.poll() is not None)
    texts = _texts(executor)
    assert texts[:2] == [spec.preamble[0], "starting to download data"]
    assert texts[2].startswith("finished downloading data after ") and texts[2].endswith("ms")
    assert texts.index("beginning to run user code") < texts.index("user code")


def test_a_training_finds_its_artifacts_where_its_environment_says_and_its_output_reaches_the_platform(platform):
    script = """
import os, sys
data, hyper, out = (os.environ[name] for name in ("KAOS_TRAIN_DATA", "KAOS_TRAIN_HYPER", "KAOS_TRAIN_OUTPUT"))
print("argv", sys.argv[1] == out)
print("data", open(os.path.join(data, "training", "a.csv")).read().strip())
for root, _, files in os.walk(hyper):
    for name in files:
        print("hyper", os.path.relpath(os.path.join(root, name), hyper), open(os.path.join(root, name)).read())
print("job", os.environ["KAOS_JOB_ID"])
os.makedirs(os.path.join(out, "model"))
open(os.path.join(out, "model", "model.txt"), "w").write("a model")
"""
    executor = platform.executor()
    spec = platform.training(script, hyperparameters=Hyperparameters("12345/lr=0.1.json", {"lr": 0.1}),
                             env={"KAOS_JOB_ID": "the job"})
    executor.start(spec)
    _wait_for(lambda: executor.poll() is not None)
    assert executor.poll() == 0, _texts(executor)
    texts = _texts(executor)
    assert {"argv True", "data 1,2,3", 'hyper 12345/lr=0.1.json {"lr": 0.1}', "job the job"} <= set(texts), texts
    assert (platform.output(spec) / "model" / "model.txt").read_text() == "a model"


def test_a_missing_artifact_is_refused_and_nothing_starts(platform):
    executor = platform.executor()
    spec = platform.training("print('never')")
    spec.data = Artifact(Artifact.INGESTED, "0" * 64, name="manifest:00000")
    with pytest.raises(ArtifactMissing) as missing:
        executor.start(spec)
    assert missing.value.artifact == spec.data
    assert executor.get_state() == {}


def test_a_signal_is_the_reason(platform):
    executor = platform.executor()
    executor.start(platform.training("import os\nprint('epoch 1', flush=True)\nos.kill(os.getpid(), 9)"))
    assert _wait_for(lambda: executor.poll()) == 128 + signal.SIGKILL
    assert executor.reason() == "killed by signal 9 (SIGKILL)"
    assert _texts(executor)[-1] == "kaos: the training ended: killed by signal 9 (SIGKILL)"
    assert "epoch 1" in _texts(executor)


def test_state_survives_a_new_executor_instance(platform):
    first = platform.executor()
    first.start(platform.training("import time\ntime.sleep(60)"))
    state = first.get_state()
    second = platform.executor()
    second.load_state(json.loads(json.dumps(state)))  # as stored on its row
    assert second.poll() is None and second.reason() is None
    second.stop(timeout=5)
    assert second.poll() is not None
    assert first.poll() is not None
    assert second.reason() == "killed on request"


def test_stop_ends_every_process_even_those_that_left_the_session(platform):
    executor = platform.executor()
    spec = platform.training(SPAWNER, env={"SLEEP": "600"})
    executor.start(spec)
    _wait_for(lambda: _beating(platform.live(spec)) == EVERY_BEAT)
    executor.stop(timeout=5)
    assert _beating(platform.live(spec)) == set()
    assert executor.poll() is not None and executor.reason() == "killed on request"
    executor.stop()  # stopping a finished workload is not an error


def test_the_end_of_the_main_process_ends_the_workload(platform):
    """What the main process left running (holding its output open, or not) is stopped when it ends."""
    executor = platform.executor()
    spec = platform.training(SPAWNER, env={"SLEEP": "1"})
    executor.start(spec)
    assert _wait_for(lambda: executor.poll()) == 0, _texts(executor)
    assert "spawned" in _texts(executor)
    assert _beating(platform.live(spec)) == set()
    assert executor.reason() == "exit code 0"


def test_stop_escalates_when_the_workload_ignores_sigterm(platform):
    executor = platform.executor()
    script = (f"import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nimport sys\nsys.argv[1:] = ['main']\n"
              f"{BEAT}")
    spec = platform.training(script)
    executor.start(spec)
    _wait_for(lambda: _beating(platform.live(spec), {"main"}) == {"main"})
    started = time.monotonic()
    executor.stop(timeout=0.5)
    assert _beating(platform.live(spec), {"main"}) == set()
    assert time.monotonic() - started < 20  # a bound on hanging, not a speed claim


def test_a_vanished_workload_counts_as_finished_and_leaves_nothing_running(platform):
    """The workload disappears without an exit code (a crash): it is VANISHED, and what it ran does not go on
    unsupervised."""
    executor = platform.executor()
    spec = platform.training(SPAWNER, env={"SLEEP": "600"})
    executor.start(spec)
    _wait_for(lambda: _beating(platform.live(spec)) == EVERY_BEAT)
    state = executor.get_state()
    platform.kind.vanish(platform.config, state)
    reattached = platform.executor()
    reattached.load_state(state)
    assert _wait_for(lambda: reattached.poll()) == VANISHED
    assert reattached.reason().startswith("vanished")
    assert _beating(platform.live(spec)) == set()


def test_follow_streams_until_the_end(platform):
    executor = platform.executor()
    executor.start(platform.training("import time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.2)"))
    texts = [line.split("] ", 1)[1] for line in executor.logs(follow=True)]
    user = texts[texts.index("beginning to run user code") + 1:]
    assert [text for text in user if not text.startswith("kaos: ")] == ["0", "1", "2"]
    assert texts[-1] == "kaos: the training ended: exit code 0"


SERVE = """
import http.server, os
print("files", " ".join(sorted(os.listdir("."))), flush=True)
class Model(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = open("model.txt", "rb").read() if os.path.exists("model.txt") else b"no model"
        self.send_response(200 if self.path == "/ping" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.HTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Model).serve_forever()
"""


def _ping(address):
    connection = http.client.HTTPConnection(address.host, address.port, timeout=1)
    try:
        connection.request("GET", "/ping")
        response = connection.getresponse()
        return response.status, response.read()
    except OSError:
        return None
    finally:
        connection.close()


def test_a_serve_workload_listens_where_start_says_with_its_model_beside_its_code(platform):
    trainer = platform.executor()
    training = platform.training("import os\nout = os.environ['KAOS_TRAIN_OUTPUT']\nos.makedirs(out + '/model')\n"
                                 "open(out + '/model/model.txt', 'w').write('the model')")
    trainer.start(training)
    _wait_for(lambda: trainer.poll() is not None)
    assert trainer.poll() == 0, _texts(trainer)
    name = f"serve-ws-{uuid.uuid4().hex[:6]}"
    spec = WorkloadSpec(job_id=name, kind="serve", log=f"endpoints/{name}", preamble=[f"processing job {name}"],
                        source=platform.source(SERVE, "serve"), model=training.output, image=platform.image)
    executor = platform.executor()
    address = executor.start(spec)
    try:
        assert address is not None and address.host and address.port
        assert _wait_for(lambda: _ping(address)) == (200, b"the model")
        # the log follows the workload's output (a moment later where a watcher copies it from the engine)
        assert _wait_for(lambda: any(text.startswith("files ") and "model.txt" in text.split()
                                     for text in _texts(executor)))
    finally:
        executor.stop()


def test_user_code_does_not_see_the_backend_token(platform, monkeypatch):
    monkeypatch.setenv("KAOS_TOKEN", "secret")
    executor = platform.executor()
    executor.start(platform.training("import os\nprint(os.environ.get('KAOS_TOKEN'))"))
    _wait_for(lambda: executor.poll() is not None)
    assert "None" in _texts(executor) and "secret" not in "\n".join(_texts(executor))


def test_clear_state_leaves_an_idle_executor_that_can_start_again(platform):
    executor = platform.executor()
    executor.start(platform.training("print('first')"))
    assert _wait_for(lambda: executor.poll() is not None)
    executor.clear_state()
    assert executor.get_state() == {}
    executor.start(platform.training("import sys\nsys.exit(4)"))
    assert _wait_for(lambda: executor.poll()) == 4


def test_the_log_is_read_and_added_to_through_any_executor_bound_to_it(platform):
    """A job's log is the executor's to keep: an idle executor bound to its name reads the same records, as
    records or as bytes (what the front polls), and adds the platform's own."""
    executor = platform.executor()
    spec = platform.training("print('hello')")
    executor.start(spec)
    _wait_for(lambda: executor.poll() is not None)
    log = platform.executor().bind_log(spec.log)
    assert list(log.logs()) == list(executor.logs()) and "hello" in _texts(log)
    log.append_log("kaos: a record of the platform's")
    assert _texts(executor)[-1] == "kaos: a record of the platform's"
    reader, raw = log.open_log(), b""
    while chunk := reader.read(7):
        raw += chunk
    reader.close()
    assert raw.decode().splitlines() == list(executor.logs())
    assert list(log.logs(follow=True, until=lambda: True)) == list(executor.logs())
    with pytest.raises(ValueError):
        platform.executor().bind_log("../../etc")


def test_a_spec_survives_its_json_form(platform):
    spec = platform.training("pass", hyperparameters=Hyperparameters("a/b.json", {"x": [1, 2]}))
    assert WorkloadSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
