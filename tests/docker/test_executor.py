"""The docker executor on the real engine, beyond the contract every executor passes (tests/executors/
test_contract.py): a build's output in its log as the engine sends it, the engine's failing-step line as its
reason, kaos's labels and the layer cache, a cancelled build; a training's container with the limits and the /pfs
mounts it asked for, removed once it ended; out of memory; a GPU the engine cannot give; a watcher that died
replaced without losing or repeating a line."""
import os
import signal
import socket
import time
import uuid

import pytest

from kaos_backend.config import Config, platform_id
from kaos_backend.executors.base import Artifact, Hyperparameters, WorkloadSpec
from kaos_backend.executors.docker_client import platform_filter, remove_platform_containers
from kaos_backend.images import labels
from tests.support.executor_platform import ExecutorPlatform

pytestmark = pytest.mark.docker

WAIT_LIMIT = 120.0  # a bound against hanging, never a speed claim
DOCKERFILE = "ARG BASE_IMAGE=python:3.11-slim\nFROM ${BASE_IMAGE}\nWORKDIR /opt/program\nCOPY . .\n"
# A build step that says it started, then waits (5 minutes at most) until the test lets it go by listening on a
# port of this machine (builds run on the host network).
GATE = """import socket, sys, time
for _ in range(3000):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1]))).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)
"""
WAITING_STEP = "RUN echo 'step started' && python3 gate.py {port}\n"


class Platform(ExecutorPlatform):
    def __init__(self, config: Config, engine):
        super().__init__(config)
        self.engine = engine
        self.platform = platform_id(config.data_dir)
        self.features = self.bundle({"features/training/a.csv": "1,2,3\n"}, "features")

    def source(self, dockerfile: str = DOCKERFILE, train: str = "") -> Artifact:
        files = {"bundle/Dockerfile": dockerfile, "bundle/model/requirements.txt": "", "bundle/model/gate.py": GATE}
        if train:
            files["bundle/model/train"] = "#!/usr/bin/env python3\n" + train
        return self.bundle(files, "bundle")

    def build_spec(self, source: Artifact, kind: str = "build-train") -> WorkloadSpec:
        job = uuid.uuid4().hex
        return WorkloadSpec(job_id=job, kind="build", log=f"jobs/{job}", preamble=[f"processing job {job}"],
                            source=source, requirements=["requirements.txt"],
                            image_name=f"{kind}-exec{uuid.uuid4().hex[:6]}:{source.name[-5:]}")

    def training(self, script: str, **extra) -> WorkloadSpec:
        job = uuid.uuid4().hex
        return WorkloadSpec(job_id=f"{job}-0", kind="train", log=f"jobs/{job}", preamble=[f"processing job {job}"],
                            source=self.source(train=script), data=self.features,
                            output=Artifact.output_of(job, "abcdef"), image=self.image, **extra)

    def containers(self, **label_values):
        wanted = [f"{name}={value}" for name, value in label_values.items()]
        return self.engine.containers.list(all=True, filters={"label": platform_filter(self.platform)["label"]
                                                              + wanted})


@pytest.fixture(scope="module")
def platform(docker_engine, base_image, tmp_path_factory):
    config = Config.from_env({}, data_dir=tmp_path_factory.mktemp("docker-executor") / "data", executor="docker",
                             base_image=base_image)
    made = Platform(config, docker_engine)
    executor = made.executor()
    made.image = executor.build(made.build_spec(made.source()))
    assert _wait_for(lambda: executor.poll() is not None, timeout=600) and executor.poll() == 0, _texts(executor)
    yield made
    remove_platform_containers(docker_engine, made.platform)
    for image in docker_engine.images.list(filters=platform_filter(made.platform)):
        docker_engine.images.remove(image.id, force=True)


@pytest.fixture(autouse=True)
def cleanup(platform):
    yield
    remove_platform_containers(platform.engine, platform.platform)


def _wait_for(predicate, timeout=WAIT_LIMIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value is not None and value is not False:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def _ended(executor) -> int:
    """The exit code of the executor's workload, once it ended."""
    _wait_for(lambda: executor.poll() is not None)
    return executor.poll()


def _texts(executor):
    return [line.split("] ", 1)[1] for line in executor.logs()]


@pytest.fixture
def gate():
    """A port of this machine that a waiting build step connects to: `gate.open()` lets it go on."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    class Gate:
        def __init__(self):
            self.port = port

        def open(self):
            listener.listen(8)
    yield Gate()
    listener.close()


def test_a_build_logs_the_engine_s_output_as_it_comes_and_labels_its_image(platform, gate):
    spec = platform.build_spec(platform.source(DOCKERFILE + WAITING_STEP.format(port=gate.port)))
    executor = platform.executor()
    image = executor.build(spec)
    assert image == f"kaos-{platform.platform}/{spec.image_name}"  # the platform's own name on the engine
    _wait_for(lambda: "step started" in _texts(executor))
    assert executor.poll() is None  # the step's output is in the log while the step still runs
    gate.open()
    assert _ended(executor) == 0, _texts(executor)
    texts = _texts(executor)
    assert f"kaos: building the image {image} from the bundle's Dockerfile with its model/ as the context, on " \
           f"{platform.config.base_image}" in texts
    assert any(text.startswith("Step 1/") for text in texts) and f"Successfully tagged {image}" in texts
    assert texts[-1] == "kaos: the build ended: exit code 0"
    built = platform.engine.images.get(image).labels
    assert (built[labels.MANAGED], built[labels.KIND], built[labels.PLATFORM]) == \
        ("true", "build-train", platform.platform)
    assert executor.is_image_ready(image)


def test_a_failing_step_is_logged_as_the_engine_reports_it_and_is_the_reason(platform):
    spec = platform.build_spec(platform.source(DOCKERFILE + "RUN echo 'no such package' >&2 && exit 1\n"))
    executor = platform.executor()
    image = executor.build(spec)
    assert _wait_for(lambda: executor.poll()) == 1
    engine_line = "The command '/bin/sh -c echo 'no such package' >&2 && exit 1' returned a non-zero code: 1"
    assert executor.reason() == engine_line
    texts = _texts(executor)
    assert engine_line in texts and "no such package" in texts  # the step's stderr, its colour codes removed
    assert not any("\x1b" in text for text in texts)
    assert texts[-1] == f"kaos: the build ended: {engine_line}"
    assert not executor.is_image_ready(image)


def test_a_base_image_the_engine_lacks_fails_the_build_at_once_without_a_pull(platform):
    """Builds never pull: an engine asked for a FROM image it lacks tried to pull it all the same, and the build
    failed with a registry's address ('Get "https://registry-1.docker.io/v2/": dial tcp: lookup ...'), or hung on
    one that did not answer. The build now fails before it starts, saying which image is missing and how to give
    one."""
    missing = f"kaos-test-no-such-base:{uuid.uuid4().hex[:8]}"
    spec = platform.build_spec(platform.source(DOCKERFILE.replace("FROM ${BASE_IMAGE}", f"FROM {missing}")))
    executor = platform.executor()
    executor.build(spec)
    assert _wait_for(lambda: executor.poll()) == 1
    assert executor.reason().startswith(f"the base image {missing} (FROM) is not on the Docker engine, and builds "
                                        "never pull"), executor.reason()
    texts = _texts(executor)
    assert f"kaos: {executor.reason()}" in texts and not any("registry" in text for text in texts), texts


def test_a_rebuild_uses_the_layer_cache(platform):
    source = platform.source(DOCKERFILE + "RUN echo cached > /opt/cached\n")
    for _ in range(2):
        executor = platform.executor()
        executor.build(platform.build_spec(source, "build-serve"))
        assert _ended(executor) == 0, _texts(executor)
    assert "---> Using cache" in [text.strip() for text in _texts(executor)]


def test_a_stopped_build_is_cancelled(platform, gate):
    spec = platform.build_spec(platform.source(DOCKERFILE + WAITING_STEP.format(port=gate.port)))
    executor = platform.executor()
    image = executor.build(spec)
    _wait_for(lambda: "step started" in _texts(executor))
    executor.stop(timeout=5)
    assert executor.poll() is not None and executor.reason() == "killed on request"
    assert _texts(executor)[-1] == "kaos: the build ended: killed on request"
    assert not executor.is_image_ready(image)


SLEEPER = "import time\nprint('waiting', flush=True)\ntime.sleep(600)"


def test_a_training_container_has_its_limits_mounts_and_labels_and_stop_removes_it(platform):
    executor = platform.executor()
    spec = platform.training(SLEEPER, cpu=0.5, memory="64Mi",
                             hyperparameters=Hyperparameters("12345/a=1.json", {"a": 1}))
    executor.start(spec)
    _wait_for(lambda: "waiting" in _texts(executor))
    [container] = platform.containers(**{labels.WORKLOAD: spec.job_id})
    host = container.attrs["HostConfig"]
    assert (host["NanoCpus"], host["Memory"], host["MemorySwap"]) == (500_000_000, 64 * 2 ** 20, 64 * 2 ** 20)
    assert host["Init"] is True
    mounts = {mount["Destination"]: mount["RW"] for mount in container.attrs["Mounts"]}
    assert mounts == {f"/pfs/data/{platform.features.name}": False, "/pfs/hyper": False, "/pfs/out/abcdef": True}
    assert container.attrs["Config"]["Entrypoint"] == ["./train", "/pfs/out/abcdef"]
    assert container.labels[labels.JOB] == spec.log.split("/")[1] and container.labels[labels.KIND] == "train"
    executor.stop(timeout=5)
    assert executor.reason() == "killed on request"
    assert platform.containers(**{labels.WORKLOAD: spec.job_id}) == []


CONTAINED = """import os, socket, time
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print("NoNewPrivs", status["NoNewPrivs"].strip(), flush=True)
try:
    socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close()
    print("raw socket: made", flush=True)
except PermissionError:
    print("raw socket: refused", flush=True)
try:
    os.mknod("/tmp/device", 0o600 | 0o020000, os.makedev(1, 3))
    print("device node: made", flush=True)
except PermissionError:
    print("device node: refused", flush=True)
while not os.path.exists(os.path.join(os.sys.argv[1], "go")):
    time.sleep(0.05)
os.makedirs(os.path.join(os.sys.argv[1], "model"))
"""


def test_a_container_drops_capabilities_gains_no_privileges_and_has_a_pids_limit(platform):
    """Containers keep only the capabilities a root process needs to hand work to unprivileged ones (1.x's nginx
    in front of gunicorn serves so: tests/docker/test_platform.py), gain no privilege through setuid binaries, and
    run a bounded number of tasks."""
    executor = platform.executor()
    spec = platform.training(CONTAINED)
    executor.start(spec)
    _wait_for(lambda: any(text.startswith("device node:") for text in _texts(executor)))
    [container] = platform.containers(**{labels.WORKLOAD: spec.job_id})
    host = container.attrs["HostConfig"]
    assert host["CapDrop"] == ["ALL"] and "NET_RAW" not in host["CapAdd"] and "MKNOD" not in host["CapAdd"]
    assert host["SecurityOpt"] == ["no-new-privileges"] and host["PidsLimit"] > 0
    (platform.layout.output_dir(*spec.output.output_parts()) / "go").touch()
    assert _ended(executor) == 0, _texts(executor)[-5:]
    texts = _texts(executor)
    assert "NoNewPrivs 1" in texts and "raw socket: refused" in texts and "device node: refused" in texts, texts


def test_a_workload_started_twice_runs_in_one_container(platform):
    """A start made twice (the scheduler ended between a start and its record, and starts it again) follows the
    container the first start made: one container, one run, one watcher's lines."""
    first = platform.executor()
    spec = platform.training(WAITS_FOR_GO)
    first.start(spec)
    _wait_for(lambda: "before" in _texts(first))
    again = platform.executor()
    again.start(spec)
    [container] = platform.containers(**{labels.WORKLOAD: spec.job_id})
    assert first.get_state()["container"] == again.get_state()["container"] == container.id
    assert "(a start made twice): following it" in _texts(again)[-1]
    (platform.layout.output_dir(*spec.output.output_parts()) / "go").touch()
    assert _ended(again) == 0 and _ended(first) == 0, _texts(again)[-5:]
    texts = _texts(again)
    assert texts.count("before") == 1 and texts.count("after") == 1, texts
    assert texts.count("kaos: the training ended: exit code 0") == 1, texts


def test_a_container_is_removed_once_it_ended(platform):
    executor = platform.executor()
    spec = platform.training("print('done')")
    executor.start(spec)
    assert _ended(executor) == 0
    assert platform.containers(**{labels.WORKLOAD: spec.job_id}) == []


def _answer_lost(platform, spec: WorkloadSpec, monkeypatch, error: Exception):
    """`spec` started by an executor whose start the engine carries out and whose answer never comes (`error`
    raised once the container started, as the docker SDK raises a read timeout or a connection the engine
    closed); the executor's own error."""
    from docker.models.containers import Container
    started = Container.start

    def start_lost(container, *args, **kwargs):
        started(container, *args, **kwargs)
        raise error

    monkeypatch.setattr(Container, "start", start_lost)
    try:
        with pytest.raises(type(error)) as raised:
            platform.executor().start(spec)
    finally:
        monkeypatch.setattr(Container, "start", started)
    return raised.value


def test_a_start_whose_answer_never_came_is_followed_once_its_container_ended_not_run_again(platform, monkeypatch):
    """A start the engine carried out and never answered (timed out) leaves the container: the next start follows
    it, ended meanwhile, its output and exit code copied as for any container: the training ran once."""
    import requests
    spec = platform.training("print('ran', flush=True)\nimport os, sys\nos.makedirs(sys.argv[1] + '/model')\n")
    _answer_lost(platform, spec, monkeypatch, requests.exceptions.ReadTimeout("Read timed out. (read timeout=120)"))
    [container] = platform.containers(**{labels.WORKLOAD: spec.job_id})
    _wait_for(lambda: container.reload() or container.status == "exited")
    again = platform.executor()
    again.start(spec)
    assert again.get_state()["container"] == container.id
    assert _ended(again) == 0, _texts(again)[-5:]
    texts = _texts(again)
    assert texts.count("ran") == 1 and "(a start made twice): following it" in texts[-3], texts
    assert texts[0] == spec.preamble[0], texts
    assert texts[-1] == "kaos: the training ended: exit code 0", texts
    assert platform.containers(**{labels.WORKLOAD: spec.job_id}) == []


def test_a_container_a_start_left_unanswered_is_removed_by_name_on_request(platform, monkeypatch):
    """A start whose connection the engine closed without an answer leaves the container running, recorded
    nowhere: a kill of its workload, which has no state yet, finds it by its name and removes it."""
    import requests
    from http.client import RemoteDisconnected
    from urllib3.exceptions import ProtocolError
    spec = platform.training(WAITS_FOR_GO)
    dropped = requests.exceptions.ConnectionError(ProtocolError("Connection aborted.", RemoteDisconnected(
        "Remote end closed connection without response")))
    _answer_lost(platform, spec, monkeypatch, dropped)
    [container] = platform.containers(**{labels.WORKLOAD: spec.job_id})
    assert container.status == "running"
    platform.executor().remove_unrecorded(spec.log, [f"{spec.job_id}-other"])  # another workload of the job's
    assert platform.containers(**{labels.WORKLOAD: spec.job_id}) != []
    platform.executor().remove_unrecorded(spec.log, [spec.job_id])
    assert platform.containers(**{labels.WORKLOAD: spec.job_id}) == []


GREEDY = """
chunks = []
for step in range(400):
    chunks.append(bytearray(1024 * 1024))
    print("allocated", step + 1, "MiB", flush=True)
"""


def test_a_training_over_its_memory_is_out_of_memory(platform):
    executor = platform.executor()
    executor.start(platform.training(GREEDY, memory="50Mi"))
    assert _wait_for(lambda: executor.poll()) != 0
    assert executor.reason() == "out of memory (limit 50Mi)"
    assert _texts(executor)[-1] == "kaos: the training ended: out of memory (limit 50Mi)"


def test_a_gpu_the_engine_cannot_give_ends_the_training_with_the_engine_s_words(platform):
    if "nvidia" in (platform.engine.info().get("Runtimes") or {}):
        pytest.skip("this engine can give GPUs")
    executor = platform.executor()
    spec = platform.training("print('never')", gpu=1)
    assert executor.start(spec) is None
    assert executor.poll() == 127
    assert executor.reason().startswith("cannot start the container: could not select device driver")
    assert _texts(executor)[-1] == f"kaos: the training ended: {executor.reason()}"
    assert platform.containers(**{labels.WORKLOAD: spec.job_id}) == []
    assert any("GPU" in warning for warning in type(executor).limits_warnings(platform.config, None, None, 1))


WAITS_FOR_GO = """
import os, time
print("before", flush=True)
while not os.path.exists(os.path.join(os.environ["KAOS_TRAIN_OUTPUT"], "go")):
    time.sleep(0.05)
print("after", flush=True)
os.makedirs(os.path.join(os.environ["KAOS_TRAIN_OUTPUT"], "model"))
"""


def test_a_watcher_that_died_is_replaced_and_the_log_loses_and_repeats_nothing(platform):
    executor = platform.executor()
    spec = platform.training(WAITS_FOR_GO)
    executor.start(spec)
    _wait_for(lambda: "before" in _texts(executor))
    state = executor.get_state()
    os.kill(state["watcher_pid"], signal.SIGKILL)
    reattached = platform.executor()
    reattached.load_state(state)
    _wait_for(lambda: reattached.poll() is None and reattached.get_state()["watcher_pid"] != state["watcher_pid"])
    (platform.layout.output_dir(*spec.output.output_parts()) / "go").touch()
    assert _ended(reattached) == 0, _texts(reattached)
    texts = _texts(reattached)
    assert texts.count("before") == 1 and texts.count("after") == 1
    assert texts[-1] == "kaos: the training ended: exit code 0"
