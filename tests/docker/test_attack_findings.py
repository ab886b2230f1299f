"""What a newcomer's and an attacker's pass over the DOCKER platform found (issue 10), one test per finding, on the
real engine. A finding that is fixed is a plain test (it failed before its fix); one that is not is
`xfail(strict=True)` with the finding in its reason, so that the test starts to pass, and fails the run, once it is
fixed.

Two platforms are used: the docker executor driven directly (`engine_platform`, as tests/docker/test_executor.py
does), and a DOCKER platform stood up by the real CLI (`cli_platform`) whose backend and watchers reach the engine
through `EngineProxy` (tests/support/docker_proxy.py), a unix socket of this test that passes every byte on to
the engine's own: stopping it is "the engine stopped answering" for that platform alone, without touching the
engine other tests and developers share."""
import contextlib
import os
import signal
import socket
import uuid
from pathlib import Path

import pytest

from kaos_backend.executors.docker import MAX_RESPAWNS, WATCHER_FAILING
from kaos_backend.executors.docker_client import remove_platform, remove_platform_containers
from kaos_backend.executors.docker_output import MAX_LINE
from kaos_backend.images import labels
from tests.docker.test_executor import DOCKERFILE, SLEEPER, WAITS_FOR_GO
from tests.docker.test_executor import Platform as ExecutorPlatform
from tests.docker.test_executor import _ended, _texts, _wait_for
from tests.docker.test_platform import WAITS_FOR_GO as WAITS_FOR_GO_ARGV
from tests.docker.test_platform import DockerPlatform, tiny_code
from tests.support.docker_proxy import EngineProxy
from tests.support.platform import tiny_data_bundle, wait_for

pytestmark = pytest.mark.docker

WAIT_LIMIT = 120.0  # seconds: a bound against hanging, never a speed claim


@pytest.fixture
def proxy():
    made = EngineProxy()
    yield made
    made.remove()


# -- the docker executor, driven directly -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def executor_platform(docker_engine, base_image, tmp_path_factory):
    from kaos_backend.config import Config
    config = Config.from_env({}, data_dir=tmp_path_factory.mktemp("attack-executor") / "data", executor="docker",
                             base_image=base_image)
    made = ExecutorPlatform(config, docker_engine)
    executor = made.executor()
    made.image = executor.build(made.build_spec(made.source()))
    assert _wait_for(lambda: executor.poll() is not None, timeout=600) and executor.poll() == 0, _texts(executor)
    yield made
    remove_platform(docker_engine, made.platform)


@pytest.fixture
def engine_platform(executor_platform):
    """The module's executor platform; what a test started on it is removed after the test."""
    yield executor_platform
    remove_platform_containers(executor_platform.engine, executor_platform.platform)


@pytest.fixture
def gate():
    """A port of this machine that a waiting build step connects to (tests/docker/test_executor.py's GATE):
    `gate.open()` lets it go on."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))

    class Gate:
        port = listener.getsockname()[1]

        @staticmethod
        def open():
            listener.listen(8)
    yield Gate()
    listener.close()


def _count(texts, letter: str) -> int:
    return sum(text.count(letter) for text in texts)


@contextlib.contextmanager
def stopped_if_failing(executor):
    """Stop the executor's workload (a build is cancelled) when the block fails."""
    try:
        yield
    except BaseException:
        executor.stop(now=True)
        raise


NO_NEWLINE_THEN_GO = """import os, sys, time
sys.stdout.write("z" * 300000)
sys.stdout.flush()
while not os.path.exists(os.path.join(sys.argv[1], "go")):
    time.sleep(0.05)
print(flush=True)
os.makedirs(os.path.join(sys.argv[1], "model"))
"""


def test_a_training_s_output_without_a_newline_reaches_the_log_while_it_runs(engine_platform):
    """Finding (fixed): output without a newline (a progress bar redrawn with \\r, one huge line) was held whole in
    the watcher's memory, concatenated again at every frame of the engine (quadratic: 30 MB took 51 s where 20 MB
    of lines took 2 s), and reached the log only once its line ended; the local runner writes it in pieces of
    MAX_LINE bytes as it comes."""
    executor = engine_platform.executor()
    spec = engine_platform.training(NO_NEWLINE_THEN_GO)
    executor.start(spec)
    with stopped_if_failing(executor):
        _wait_for(lambda: _count(_texts(executor), "z") >= MAX_LINE, timeout=WAIT_LIMIT)
        assert executor.poll() is None  # in the log while the line still goes on
    (engine_platform.layout.output_dir(*spec.output.output_parts()) / "go").touch()
    assert _ended(executor) == 0, _texts(executor)[-5:]
    assert _count(_texts(executor), "z") == 300000  # nothing lost, nothing written twice


NO_NEWLINE_STEP = ("RUN python3 -c \"import sys; sys.stdout.write(chr(81) * 300000); sys.stdout.flush()\" "
                   "&& python3 gate.py {port}\n")


def test_a_build_s_output_without_a_newline_reaches_the_log_while_it_runs(engine_platform, gate):
    """Finding (fixed): the same for a build step's output (`(pending + chunk).split("\\n")` over the whole line
    at every chunk the engine sent)."""
    executor = engine_platform.executor()
    executor.build(engine_platform.build_spec(engine_platform.source(DOCKERFILE + NO_NEWLINE_STEP.format(
        port=gate.port))))
    with stopped_if_failing(executor):  # else the build waits for its gate for minutes after the test
        _wait_for(lambda: _count(_texts(executor), "Q") >= MAX_LINE, timeout=WAIT_LIMIT)
        assert executor.poll() is None
    gate.open()
    assert _ended(executor) == 0, _texts(executor)[-5:]
    assert _count(_texts(executor), "Q") == 300000


def test_a_watcher_started_while_the_engine_does_not_answer_waits_for_it(engine_platform, proxy, monkeypatch):
    """Finding (fixed): a watcher started again while the engine did not answer (dockerd restarting: its socket is
    gone while the backend's kept-alive connection still works) failed at once, making its client; three such
    respawns in two seconds, and once the engine was back the executor removed the container and reported the
    training "vanished". A watcher now waits for the engine as long as it does for a broken log stream, and says
    so in the log."""
    executor = engine_platform.executor()
    spec = engine_platform.training(WAITS_FOR_GO)
    executor.start(spec)
    _wait_for(lambda: "before" in _texts(executor))
    monkeypatch.setenv("DOCKER_HOST", proxy.docker_host)  # where the next watcher looks: nothing answers there
    state = executor.get_state()
    os.kill(state["watcher_pid"], signal.SIGKILL)
    reattached = engine_platform.executor()
    reattached.load_state(state)

    def waiting():
        assert reattached.poll() is None, _texts(reattached)[-5:]  # the scheduler's look: never vanished
        return any(text.startswith("kaos: the Docker engine does not answer") for text in _texts(reattached))
    _wait_for(waiting)
    proxy.start()
    (engine_platform.layout.output_dir(*spec.output.output_parts()) / "go").touch()
    assert _ended(reattached) == 0, _texts(reattached)[-5:]
    texts = _texts(reattached)
    assert not [text for text in texts if "watcher of this training failed" in text]
    assert texts.count("before") == 1 and texts.count("after") == 1
    assert texts[-1] == "kaos: the training ended: exit code 0"


def test_a_watcher_that_cannot_remove_its_container_still_records_how_it_ended(engine_platform, proxy, monkeypatch):
    """Finding (fixed): when the engine went away between the container's end and its removal (`pkill dockerd`
    stops the containers, then the socket), the watcher died in the removal with the exit code in hand, and wrote
    no record. It now tries again while the engine does not answer, then records the end in any case."""
    monkeypatch.setenv("DOCKER_HOST", proxy.docker_host)  # the watcher's engine; the executor's is the real one
    proxy.refuse_removals = True
    proxy.start()
    executor = engine_platform.executor()
    spec = engine_platform.training("print('done', flush=True)\nraise SystemExit(7)\n")
    executor.start(spec)
    _wait_for(lambda: proxy.refused >= 1)
    proxy.refuse_removals = False
    assert _ended(executor) == 7, _texts(executor)[-5:]
    texts = _texts(executor)
    assert not [text for text in texts if "watcher of this training failed" in text], texts[-5:]
    assert texts[-1] == "kaos: the training ended: exit code 7 (last output: done)"
    assert engine_platform.containers(**{labels.WORKLOAD: spec.job_id}) == []


def test_after_its_watchers_kept_dying_the_reason_says_so_not_that_the_container_vanished(engine_platform):
    """Finding (fixed): once its watchers had died MAX_RESPAWNS times, the executor removed the container itself and
    then gave "vanished: its container is gone without an exit code (removed from the engine, or the engine lost
    it)" as the reason: the removal it had just made."""
    executor = engine_platform.executor()
    spec = engine_platform.training(SLEEPER)
    executor.start(spec)
    _wait_for(lambda: "waiting" in _texts(executor))
    for _ in range(MAX_RESPAWNS + 1):
        pid = executor.get_state()["watcher_pid"]
        os.kill(pid, signal.SIGKILL)
        _wait_for(lambda: executor.poll() is not None or executor.get_state()["watcher_pid"] != pid)
    assert executor.poll() is not None
    assert executor.reason() == WATCHER_FAILING
    assert engine_platform.containers(**{labels.WORKLOAD: spec.job_id}) == []


# -- a DOCKER platform stood up by the CLI, its engine behind EngineProxy ------------------------------------------

class ProxiedPlatform(DockerPlatform):
    """A DockerPlatform whose CLI, backend and watchers reach the engine through `proxy`."""

    def __init__(self, project: Path, base_image: str, proxy: EngineProxy):
        super().__init__(project, base_image)
        self.proxy = proxy

    def kaos(self, *args, **kwargs):
        kwargs["env"] = dict(kwargs.get("env") or {}, DOCKER_HOST=self.proxy.docker_host)
        return super().kaos(*args, **kwargs)

    def trained_in(self, workspace: str, tmp_path: Path, name: str, script: str) -> str:
        """The id of a training of `script` (its code and data in `tmp_path`/`name`) deployed in `workspace`."""
        code = tiny_code(tmp_path / f"code-{name}", script)
        data = tiny_data_bundle(tmp_path / f"data-{name}", marker=uuid.uuid4().hex)
        before = {job["job_id"] for job in self.kind(workspace, "training")}
        deployed = self.kaos("train", "deploy", "-s", str(code), "-d", str(data))
        assert deployed.code == 0, deployed
        return wait_for(lambda: next((job["job_id"] for job in self.kind(workspace, "training")
                                      if job["job_id"] not in before), None), what="a new training")

    def trained(self, workspace: str, tmp_path: Path, script: str, *options: str) -> dict:
        """The training of `script` on new data in `workspace` (made when missing), once it ended."""
        if self.kaos("workspace", "set", "-n", workspace).code != 0:
            self.workspace(workspace)
        code = tiny_code(tmp_path / f"code-{workspace}", script) if not (tmp_path / f"code-{workspace}").exists() \
            else tmp_path / f"code-{workspace}"
        data = tiny_data_bundle(tmp_path / f"data-{uuid.uuid4().hex[:6]}", marker=uuid.uuid4().hex)
        before = {job["job_id"] for job in self.kind(workspace, "training")}
        deployed = self.kaos("train", "deploy", "-s", str(code), "-d", str(data), *options)
        assert deployed.code == 0, deployed
        job = wait_for(lambda: next((job for job in self.kind(workspace, "training") if job["job_id"] not in before),
                                    None), what="a new training")
        return self.terminal(workspace, job["job_id"])


@contextlib.contextmanager
def proxied_platform(docker_engine, base_image: str, project: Path):
    """A ProxiedPlatform deployed in `project`, behind an EngineProxy of its own; destroyed at the end (the proxy
    answering again first) and its leftovers removed from the engine."""
    engine_proxy = EngineProxy().start()
    made = ProxiedPlatform(project, base_image, engine_proxy)
    made.deploy()
    try:
        yield made
    finally:
        engine_proxy.hang_creates = engine_proxy.refuse_removals = False
        engine_proxy.hang_matching = engine_proxy.lose_answers = None
        if engine_proxy._listener is None:
            engine_proxy.start()
        made.destroy()
        remove_platform(docker_engine, made.platform)
        engine_proxy.remove()


@pytest.fixture(scope="module")
def cli_platform(docker_engine, base_image, tmp_path_factory):
    with proxied_platform(docker_engine, base_image, tmp_path_factory.mktemp("attack-project")) as made:
        yield made


WRITES_A_MODEL = "import os, sys\nprint('trained', flush=True)\nos.makedirs(os.path.join(sys.argv[1], 'model'))\n"


def test_a_training_without_a_model_is_told_the_path_it_was_given_not_the_host_s(cli_platform, tmp_path):
    """Finding (fixed): "train exited 0 but wrote no model: expected the directory /tmp/.../.kaos/DOCKER/data/jobs/
    <job>/out/<hex6>/model" named a path of the backend's machine that the container never saw (its output was
    /pfs/out/<hex6>); the reason now names what the training was given."""
    job = cli_platform.trained("nomodel", tmp_path, "print('no model', flush=True)\n")
    assert job["state"] == "JOB_FAILURE", job
    assert "wrote no model" in job["reason"] and str(cli_platform.data_dir) not in job["reason"], job
    assert "model/" in job["reason"] and "KAOS_TRAIN_OUTPUT" in job["reason"], job


def test_a_cpu_request_the_engine_cannot_give_is_warned_of_at_deploy(cli_platform, tmp_path):
    """Finding (fixed): `--cpu 1000` on a 2-CPU engine was taken without a word; the training then failed at once
    ("Range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available"). The deploy now warns, as it
    does for --gpu on an engine without an NVIDIA runtime."""
    code = tiny_code(tmp_path / "code", WRITES_A_MODEL)
    cli_platform.workspace("cpus")
    deployed = cli_platform.kaos("train", "deploy", "-s", str(code), "-d", str(tiny_data_bundle(tmp_path / "data")),
                                 "--cpu", "1024")  # kaos's bound; more than this machine's CPUs (the engine's)
    assert deployed.code == 0, deployed
    assert "Warning - --cpu" in deployed.err and "CPUs" in deployed.err, deployed


NEVER_ANSWERS = """#!/usr/bin/env python3
import socket
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("0.0.0.0", 8080))
server.listen(64)
print("listening, never answering", flush=True)
held = []
while True:
    held.append(server.accept()[0])
"""


def _serve_bundle(root: Path, serve: str) -> Path:
    model = root / "never" / "model"
    model.mkdir(parents=True)
    (root / "never" / "Dockerfile").write_text(DOCKERFILE)
    for name, text in (("__init__.py", ""), ("requirements.txt", ""), ("web-requirements.txt", ""), ("serve", serve)):
        (model / name).write_text(text)
    (model / "serve").chmod(0o755)
    return root


def test_an_endpoint_that_accepts_but_never_answers_ping_is_not_said_to_refuse_connections(cli_platform, tmp_path):
    """Finding (fixed): an endpoint whose server accepts connections and never answers `GET /ping` was "waiting to
    be ready: it does not accept connections yet" (then "not ready 300s after its start (it does not accept
    connections yet)"): the probe's timeout and a refused connection were one answer."""
    cli_platform.workspace("silent")
    deployed = cli_platform.kaos("serve", "deploy", "-s", str(_serve_bundle(tmp_path, NEVER_ANSWERS)))
    assert deployed.code == 0, deployed
    name = wait_for(lambda: next((row["name"] for row in cli_platform.get("inference/silent").json()["response"]
                                  ["endpoints"]), None), what="the endpoint")
    log = cli_platform.data_dir / "endpoints" / name / "log"
    wait_for(lambda: log.exists() and "listening, never answering" in log.read_text(), what="the server to listen")

    def reason():
        row = next(row for row in cli_platform.get("inference/silent").json()["response"]["endpoints"]
                   if row["name"] == name)
        return row["reason"] if row["reason"] and "answer" in row["reason"] else None
    words = wait_for(reason, timeout=WAIT_LIMIT, what="the reason to say what the probe met")
    assert "does not accept connections" not in words and "/ping" in words, words
    assert cli_platform.kaos("serve", "kill", "-e", name, "-y").code == 0


def test_an_image_removed_from_the_engine_is_built_again_on_the_next_deploy(cli_platform, docker_engine, tmp_path):
    """Finding (fixed): an image kaos built that left the engine (`docker rmi`, `docker image prune -a`) was never
    built again: every training of that bundle failed at once with 'cannot start the container: no such image:
    ...', and deploying the same bundle again started the same failure (its last build had succeeded, so no build
    was asked for). A start now checks the image first (`is_image_ready`); one that is gone is built again, the
    training waits for that build, and its log says why."""
    first = cli_platform.trained("pruned", tmp_path, WRITES_A_MODEL)
    assert first["state"] == "JOB_SUCCESS", first
    for image in docker_engine.images.list(filters={"label": [f"{labels.PLATFORM}={cli_platform.platform}",
                                                              f"{labels.KIND}=build-train"]}):
        if any("/build-train-pruned:" in tag for tag in image.tags):
            docker_engine.images.remove(image.id, force=True)  # as `docker image prune -a` would
    builds = len(cli_platform.kind("pruned", "building"))
    again = cli_platform.trained("pruned", tmp_path, WRITES_A_MODEL)
    assert again["state"] == "JOB_SUCCESS", again["reason"]  # "cannot start the container: no such image: ..."
    assert len(cli_platform.kind("pruned", "building")) == builds + 1
    assert "is no longer on the engine (removed since it was built): building it again" in \
        cli_platform.get(f"train/pruned/{again['job_id']}/logs").text


def test_another_platform_s_destroy_leaves_this_platform_s_trainings_running(cli_platform, docker_engine, base_image,
                                                                             tmp_path):
    """Finding (fixed): two DOCKER platforms on one engine (two projects, two users, the test suite beside a user's
    platform) named their images alike, build-train-<ws>:<hash5>: the second one's build took the tag, the first
    one's image was left untagged, and the first platform's next training started from the second one's image;
    once the second platform was destroyed, the first one's trainings failed ('no such image'). Each platform now
    names its images under `kaos-<platform>/`."""
    first = cli_platform.trained("shared", tmp_path, WRITES_A_MODEL)
    assert first["state"] == "JOB_SUCCESS", first
    other = DockerPlatform(tmp_path / "other-project", base_image)
    (tmp_path / "other-project").mkdir()
    try:
        other.deploy()
        other.workspace("shared")
        deployed = other.kaos("train", "deploy", "-s", str(tmp_path / "code-shared"), "-d",
                              str(tiny_data_bundle(tmp_path / "other-data")))
        assert deployed.code == 0, deployed
        other.terminal("shared", other.latest("shared", "training")["job_id"])
        assert _image_tags(docker_engine, cli_platform, "shared")  # its image kept its name through the other's build
    finally:
        other.destroy()
        if other.platform:
            remove_platform(docker_engine, other.platform)  # whatever a failed destroy left
    assert _image_tags(docker_engine, cli_platform, "shared")  # and through its destroy
    again = cli_platform.trained("shared", tmp_path, WRITES_A_MODEL)
    assert again["state"] == "JOB_SUCCESS", again["reason"]  # "cannot start the container: no such image: ..."


def _image_tags(engine, platform, workspace: str) -> list:
    """The tags of the platform's training images of `workspace` on the engine."""
    return [tag for image in engine.images.list(filters={"label": [f"{labels.PLATFORM}={platform.platform}"]})
            for tag in image.tags if f"/build-train-{workspace}:" in tag]


def test_a_training_refused_for_its_limits_runs_when_deployed_again_with_other_limits(cli_platform, tmp_path):
    """Finding (fixed): a training refused for its limits could not be tried again with other limits. After `--cpu
    100000` ended at once (the engine's words as the reason), `kaos train deploy` of the same code and data with
    `--cpu 1` recorded the new limit and started nothing: a new training was made only for a new combination of
    code, data and hyperparameters. Now a combination whose last training failed (or was killed) is trained again
    when its limits differ; the same limits again start nothing (README, How it runs)."""
    refused = cli_platform.trained("limits", tmp_path, WRITES_A_MODEL, "--cpu", "1024")  # kaos's bound: > the engine's
    assert refused["state"] == "JOB_FAILURE" and "CPU" in refused["reason"], refused
    before = {job["job_id"] for job in cli_platform.kind("limits", "training")}
    data = next(path for path in tmp_path.iterdir() if path.name.startswith("data-"))
    deployed = cli_platform.kaos("train", "deploy", "-s", str(tmp_path / "code-limits"), "-d", str(data),
                                 "--cpu", "1")
    assert deployed.code == 0, deployed
    job = wait_for(lambda: next((job for job in cli_platform.kind("limits", "training")
                                 if job["job_id"] not in before), None), timeout=30, what="a new training")
    assert cli_platform.terminal("limits", job["job_id"])["state"] == "JOB_SUCCESS"
    assert job["job_id"] != refused["job_id"]


def test_while_the_engine_does_not_answer_a_running_training_says_so(cli_platform, tmp_path):
    """Finding (fixed): while the engine did not answer, every running training stayed JOB_RUNNING and every
    endpoint PIPELINE_RUNNING with no reason, GET /api/health said ok, and where a watcher was gone the backend log
    got a full traceback per job about every second (and the job failed after three: "the scheduler could not
    advance this train job"). Now the scheduler holds the workloads while the engine does not answer: the job's
    reason says so (cleared once it answers), the health names the engine, the backend log has one line when it
    stops answering and one when it answers again, and a watcher that died meanwhile is replaced afterwards."""
    cli_platform.workspace("engine")
    code = tiny_code(tmp_path / "code", WAITS_FOR_GO_ARGV)
    deployed = cli_platform.kaos("train", "deploy", "-s", str(code), "-d", str(tiny_data_bundle(tmp_path / "data")))
    assert deployed.code == 0, deployed
    job_id = cli_platform.latest("engine", "training")["job_id"]
    wait_for(lambda: "before" in cli_platform.get(f"train/engine/{job_id}/logs").text, what="the training to start")
    backend_log = Path(cli_platform._context()["log"])
    offset = backend_log.stat().st_size
    cli_platform.proxy.stop()
    try:
        def engine_named():
            reason = cli_platform.job("engine", job_id).get("reason") or ""
            return reason if reason.startswith("the Docker engine does not answer since ") else None
        wait_for(engine_named, timeout=WAIT_LIMIT, what="the training's reason to name the engine")
        health = cli_platform.get("health")
        assert health.status_code == 503 and health.json()["part"] == "engine", health.text
        assert health.json()["message"].startswith("The Docker engine does not answer since "), health.text
        assert health.json()["parts"]["engine"]["state"] == "down"
        for pid in _watcher_pids(cli_platform.data_dir, job_id):  # its watcher dies while nothing answers
            os.kill(pid, signal.SIGKILL)
    finally:
        cli_platform.proxy.start()
    wait_for(lambda: cli_platform.get("health").status_code == 200, timeout=WAIT_LIMIT, what="the health")
    wait_for(lambda: cli_platform.job("engine", job_id)["state"] == "JOB_RUNNING"
             and not cli_platform.job("engine", job_id).get("reason"), what="the reason cleared")
    [out] = (cli_platform.data_dir / "jobs" / job_id / "out").iterdir()
    (out / "go").touch()
    job = cli_platform.terminal("engine", job_id)
    assert job["state"] == "JOB_SUCCESS", job
    texts = [line.split("] ", 1)[-1] for line in cli_platform.kaos("train", "logs", "-j", job_id).out.splitlines()]
    assert texts.count("before") == 1 and texts.count("after") == 1, texts[-8:]
    with open(backend_log, "rb") as handle:
        handle.seek(offset)
        said = handle.read().decode(errors="replace")
    assert said.count("the Docker engine does not answer (") == 1, said[-3000:]
    assert said.count("the Docker engine answers again") == 1, said[-3000:]
    assert "could not advance" not in said and "Traceback" not in said, said[-3000:]


def _watcher_pids(data_dir: Path, job_id: str) -> list:
    """The processes whose command line names the job's directory (its watchers)."""
    home = str(data_dir / "jobs" / job_id)
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                if home in handle.read().decode(errors="replace"):
                    found.append(int(entry))
        except (OSError, ValueError):
            continue
    assert found, f"no watcher of {job_id}"
    return found
