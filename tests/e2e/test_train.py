"""Issue 3 acceptance: training on the embedded default, driven by the real CLI against a LOCAL platform,
with real virtualenvs and processes. Waiting goes through the API; what the user sees goes through the CLI."""
import os
import re
import time
from pathlib import Path

import pytest

from tests.support.platform import (REPO, LocalPlatform, tiny_data_bundle, tiny_train_bundle, wait_for,
                                    wait_terminal)

MNIST_DATA = str(REPO / "templates/mnist/data")
MODEL_ID = re.compile(r"\b[0-9a-f]{5}_[0-9a-f]{5}:[0-9a-f]{6}\b")


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    deployed = LocalPlatform(tmp_path_factory.mktemp("train-project"))
    deployed.deploy()
    yield deployed
    deployed.destroy()


def _latest(platform, workspace, kind, count=1):
    """The newest job of `kind` once there are at least `count` of them."""
    return wait_for(lambda: (lambda jobs: jobs[0] if len(jobs) >= count else None)(platform.jobs(workspace)[kind]),
                    what=f"{count} {kind} job(s) in {workspace}")


def _set_workspace(platform, name):
    assert platform.kaos("workspace", "set", "-n", name).code == 0


def test_mnist_trains_and_info_shows_the_model(platform):
    platform.workspace("mnist")
    assert platform.kaos("template", "get", "--name", "mnist").code == 0
    deployed = platform.kaos("train", "deploy", "-s", "templates/mnist/model-train", "-d", "templates/mnist/data")
    assert deployed.code == 0, deployed
    assert re.search(r"✔ Setting source bundle: /mnist:[0-9a-f]{5}", deployed.out), deployed.out
    assert re.search(r"✔ Setting data bundle: /features:[0-9a-f]{5}", deployed.out), deployed.out
    assert "CURRENT TRAINING INPUTS" in deployed.out

    job = wait_terminal(platform, "mnist", _latest(platform, "mnist", "training")["job_id"])
    assert job["state"] == "JOB_SUCCESS", platform.api("GET", f"train/mnist/{job['job_id']}/logs").json()

    listed = platform.kaos("train", "list")
    assert "TRAINING" in listed.out and "JOB_SUCCESS" in listed.out and job["job_id"] in listed.out

    info = platform.kaos("train", "info", "-i", "0")
    assert info.code == 0, info
    assert MODEL_ID.search(info.out), info.out
    for metric in ("accuracy_train", "accuracy_validation", "accuracy_test"):
        assert metric in info.out
    assert "State: JOB_SUCCESS" in info.out

    logs = platform.kaos("train", "logs", "-i", "0")
    assert logs.code == 0, logs
    for record in (f"processing job {job['job_id']}", "starting to download data", "finished downloading data after",
                   "beginning to run user code", "accuracy_validation"):
        assert record in logs.out
    assert re.match(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] processing job ", logs.out.splitlines()[0])
    assert (platform.project / "mnist" / "logs" / f"train-{job['job_id']}.log").is_file()


def test_seed_build_error_shows_in_build_logs(platform):
    platform.workspace("build-error")
    source = platform.copy_template("mnist/model-train", "typo-requirements")
    requirements = source / "mnist" / "model" / "requirements.txt"
    requirements.write_text(requirements.read_text() + "pandas=0.24\n")
    assert platform.kaos("train", "deploy", "-s", str(source), "-d", MNIST_DATA).code == 0

    build = wait_terminal(platform, "build-error", _latest(platform, "build-error", "building")["job_id"])
    assert build["state"] == "JOB_FAILURE"
    listed = platform.kaos("train", "list")
    assert "BUILDING" in listed.out and "JOB_FAILURE" in listed.out and build["job_id"] in listed.out

    logs = platform.kaos("train", "build-logs", "-j", build["job_id"])
    assert logs.code == 0, logs
    assert f"processing job {build['job_id']}" in logs.out
    assert "pandas=0.24" in logs.out                       # pip's complaint names the bad line
    assert "returned a non-zero code: 1" in logs.out
    assert platform.jobs("build-error")["training"] == []  # no training from a failed build


def test_the_build_log_names_the_dockerfile_instructions_local_does_not_apply(platform, tmp_path):
    """A newcomer's finding: `RUN apt-get install -y libgomp1` and `ENV MY_SETTING=42` in a bundle's Dockerfile did
    nothing on LOCAL and nothing said so (the training printed MY_SETTING = None). The build log says it, for a
    build that makes the virtualenv and for one that finds it made (warm) alike."""
    code = tiny_train_bundle(tmp_path / "code", "import os, sys\nos.makedirs(sys.argv[1] + '/model')\n",
                             requirements="# dockerfile-notes\n")
    dockerfile = code / "tiny" / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + "RUN apt-get install -y libgomp1\nENV MY_SETTING=42\n")
    expected = ("kaos: LOCAL builds a virtualenv of the bundle's requirements files; these instructions of its "
                "Dockerfile are not applied here (a DOCKER or KUBERNETES platform runs them): RUN apt-get install "
                "-y libgomp1; ENV MY_SETTING=42")
    data = tiny_data_bundle(tmp_path / "data")
    for workspace in ("dockerfile-cold", "dockerfile-warm"):
        platform.workspace(workspace)
        deployed = platform.kaos("train", "deploy", "-s", str(code), "-d", str(data))
        assert deployed.code == 0, deployed
        build = wait_terminal(platform, workspace, _latest(platform, workspace, "building")["job_id"])
        assert build["state"] == "JOB_SUCCESS"
        logs = platform.kaos("train", "build-logs", "-j", build["job_id"])
        assert expected in logs.out, logs.out
    assert "Using cached image" in logs.out  # the second build was a warm one


def test_seed_train_error_shows_the_syntax_error(platform):
    platform.workspace("train-error")
    source = platform.copy_template("mnist/model-train", "unclosed-bracket")
    train = source / "mnist" / "model" / "train"
    text = train.read_text()
    assert "training_labels.values)" in text
    train.write_text(text.replace("training_labels.values)", "training_labels.values", 1))
    assert platform.kaos("train", "deploy", "-s", str(source), "-d", MNIST_DATA).code == 0

    job = wait_terminal(platform, "train-error", _latest(platform, "train-error", "training")["job_id"])
    assert job["state"] == "JOB_FAILURE"
    listed = platform.kaos("train", "list")
    assert "TRAINING" in listed.out and "JOB_FAILURE" in listed.out

    logs = platform.kaos("train", "logs", "-j", job["job_id"])
    assert "SyntaxError" in logs.out, logs.out
    assert re.search(r'File "[^"]*train", line \d+', logs.out), logs.out


def test_new_data_retrains_and_identical_inputs_start_nothing(platform, tmp_path):
    platform.workspace("incremental")
    code = tiny_train_bundle(tmp_path / "code", "import os, sys\nos.makedirs(sys.argv[1] + '/model')\n")
    first = tiny_data_bundle(tmp_path / "data1", "1")
    second = tiny_data_bundle(tmp_path / "data2", "2")

    assert platform.kaos("train", "deploy", "-s", str(code), "-d", str(first)).code == 0
    job = wait_terminal(platform, "incremental", _latest(platform, "incremental", "training")["job_id"])
    assert job["state"] == "JOB_SUCCESS"

    assert platform.kaos("train", "deploy", "-d", str(second)).code == 0   # new data alone: the same image
    newer = _latest(platform, "incremental", "training", count=2)
    assert wait_terminal(platform, "incremental", newer["job_id"])["state"] == "JOB_SUCCESS"

    assert platform.kaos("train", "deploy", "-s", str(code), "-d", str(second)).code == 0  # identical inputs
    time.sleep(2)  # give the scheduler many ticks to (wrongly) start something
    jobs = platform.jobs("incremental")
    assert len(jobs["training"]) == 2 and len(jobs["building"]) == 1


def _processes(matching) -> list:
    """Pids of live processes for which `matching(pid)` is true (unreadable ones are skipped)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if matching(int(entry)):
                    found.append(int(entry))
            except OSError:
                continue
    return found


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")


def _cwd_under(directory: str):
    return lambda pid: os.path.realpath(f"/proc/{pid}/cwd").startswith(directory)


def test_kill_a_running_training(platform, tmp_path):
    platform.workspace("killing")
    marker = "kill-marker"
    script = ("import subprocess, time\n"
              "subprocess.Popen(['sleep', '300'])\n"
              f"print('{marker} started', flush=True)\n"
              "time.sleep(300)\n")
    code = tiny_train_bundle(tmp_path / "code", script)
    assert platform.kaos("train", "deploy", "-s", str(code), "-d", str(tiny_data_bundle(tmp_path / "d"))).code == 0
    job_id = _latest(platform, "killing", "training")["job_id"]
    wait_for(lambda: f"{marker} started" in platform.api("GET", f"train/killing/{job_id}/logs").json(),
             what="the training to print its marker")
    work_dir = str(platform.data_dir / "jobs" / job_id)
    assert len(_processes(_cwd_under(work_dir))) >= 2  # the train script and its sleep

    killed = platform.kaos("train", "kill", "-j", job_id)
    assert killed.code == 0, killed
    assert f"Job {job_id} successfully killed" in killed.text
    assert platform.job("killing", job_id)["state"] == "JOB_KILLED"
    assert _processes(_cwd_under(work_dir)) == []

    again = platform.kaos("train", "kill", "-j", job_id)
    assert again.code == 1 and f"Job is not running, id: {job_id}" in again.text
    unknown = platform.kaos("train", "kill", "-j", "0" * 32)
    assert unknown.code == 1 and "There is no job with id: " in unknown.text


def _waiting_training(platform, workspace: str, tmp_path, release) -> str:
    """The id of a training deployed in a new `workspace` that prints a first line, waits (120 s at most) for the
    file `release`, prints a second line and writes its model."""
    platform.workspace(workspace)
    script = ("import os, sys, time\n"
              "print('first line from train', flush=True)\n"
              f"deadline = time.time() + 120\n"
              f"while not os.path.exists({str(release)!r}) and time.time() < deadline:\n"
              "    time.sleep(0.05)\n"
              f"if not os.path.exists({str(release)!r}):\n"
              "    sys.exit('never released: the follower did not see the first line while the job ran')\n"
              "print('second line from train', flush=True)\n"
              "os.makedirs(sys.argv[1] + '/model')\n")
    code = tiny_train_bundle(tmp_path / "code", script)
    assert platform.kaos("train", "deploy", "-s", str(code), "-d", str(tiny_data_bundle(tmp_path / "d"))).code == 0
    return _latest(platform, workspace, "training")["job_id"]


def _follower(platform, job_id):
    """`kaos train logs -j <job_id> -f` as a process of its own, its output in pipes (text)."""
    import subprocess
    from tests.support.cli import KAOS
    return subprocess.Popen([KAOS, "train", "logs", "-j", job_id, "-f"], cwd=platform.project,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, USER="tester"))


def test_logs_follow_streams_live(platform, tmp_path, shared_dir):
    release = shared_dir / "release"
    job_id = _waiting_training(platform, "following", tmp_path, release)

    follower = _follower(platform, job_id)
    seen = []
    for line in follower.stdout:  # the train script blocks until we have seen its first line live
        seen.append(line)
        if "first line from train" in line:
            release.write_text("go")
    assert follower.wait(timeout=120) == 0, (seen, follower.stderr.read())
    text = "".join(seen)
    assert "first line from train" in text and "second line from train" in text


def test_a_follow_cut_by_a_restarted_front_goes_on_where_it_was(platform, tmp_path, shared_dir):
    """A newcomer's finding: `kaos train logs -f` ended with "The log stream ... was interrupted" (exit 1) when the
    backend restarted, while the training went on. The front (where follows are served) killed and brought back by
    the supervisor: the follow opens the log again, prints no record twice, and ends with the job."""
    import signal

    def restart_front():
        front = platform.api("GET", "health").json()["parts"]["front"]["pid"]
        os.kill(front, signal.SIGKILL)

        def front_back():
            try:
                part = platform.api("GET", "health").json()["parts"]["front"]
            except (OSError, ValueError, KeyError):  # not listening yet (requests' errors are OSErrors)
                return False
            return part["pid"] != front and part["state"] == "up"
        wait_for(front_back, 60, what="the front back")
    stderr = _followed_across(platform, "cut-follow", tmp_path, shared_dir / "release-cut", restart_front)
    assert "was interrupted" in stderr and ": opening it again" in stderr and "Log saved to" in stderr, stderr


def _followed_across(platform, workspace: str, tmp_path, release, interruption) -> str:
    """A training followed with `kaos train logs -f` whose follow sees `interruption()` after its first line: the
    follow must end with the job (exit 0), each line printed once; its stderr."""
    job_id = _waiting_training(platform, workspace, tmp_path, release)
    follower = _follower(platform, job_id)
    try:
        seen = []
        for line in follower.stdout:
            seen.append(line)
            if "first line from train" in line:
                break
        interruption()
        release.write_text("go")
        seen.extend(follower.stdout)
        assert follower.wait(timeout=120) == 0, (seen, follower.stderr.read())
    finally:
        follower.kill()
    text = "".join(seen)
    assert text.count("first line from train") == 1 and text.count("second line from train") == 1, text
    return follower.stderr.read()


def test_a_follow_goes_on_across_a_redeploy_with_a_new_token(platform, tmp_path, shared_dir):
    """A newcomer's finding: `kaos train logs -f` across `kaos build deploy -c LOCAL -f` (the backend made again,
    with a new token, while the training went on) ended with "Unauthorized token": the follow opened the log again
    with the token it started with. The client reads the context's url and token again on a 401."""
    token = platform._context()["token"]

    def redeploy():
        platform.deploy(force=True)
        assert platform._context()["token"] != token
    stderr = _followed_across(platform, "redeploy-follow", tmp_path, shared_dir / "release-redeploy", redeploy)
    assert "Unauthorized" not in stderr, stderr


def test_follow_exits_1_when_the_job_fails(platform, tmp_path):
    platform.workspace("failing")
    code = tiny_train_bundle(tmp_path / "code", "import sys\nprint('about to fail')\nsys.exit(3)\n")
    assert platform.kaos("train", "deploy", "-s", str(code), "-d", str(tiny_data_bundle(tmp_path / "d"))).code == 0
    job_id = _latest(platform, "failing", "training")["job_id"]
    followed = platform.kaos("train", "logs", "-j", job_id, "-f")
    assert followed.code == 1
    assert "about to fail" in followed.out


def test_backend_killed_mid_training_and_restarted(tmp_path, shared_dir):
    platform = LocalPlatform(tmp_path / "project")
    platform.project.mkdir()
    platform.deploy()
    try:
        platform.workspace("restart")
        gate = shared_dir / "gate"
        script = ("import os, sys, time\n"
                  "print('before the crash', flush=True)\n"
                  f"while not os.path.exists({str(gate)!r}):\n"
                  "    time.sleep(0.05)\n"
                  "print('after the crash', flush=True)\n"
                  "os.makedirs(sys.argv[1] + '/model')\n")
        code = tiny_train_bundle(tmp_path / "code", script)
        assert platform.kaos("train", "deploy", "-s", str(code), "-d", str(tiny_data_bundle(tmp_path / "d"))).code == 0
        job_id = _latest(platform, "restart", "training")["job_id"]
        wait_for(lambda: "before the crash" in platform.api("GET", f"train/restart/{job_id}/logs").json(),
                 what="the training to start")

        platform.kill_backend()
        gate.write_text("go")  # the training goes on and ends while no backend runs
        log_path = platform.data_dir / "jobs" / job_id / "log"
        wait_for(lambda: "after the crash" in log_path.read_text(), what="the training to finish on its own")

        platform.deploy(force=True)
        job = wait_terminal(platform, "restart", job_id, timeout=60)
        assert job["state"] == "JOB_SUCCESS"
        logs = platform.kaos("train", "logs", "-j", job_id).out
        assert "before the crash" in logs and "after the crash" in logs
    finally:
        platform.destroy()


def test_a_training_lost_with_the_machine_is_marked_failed(tmp_path):
    platform = LocalPlatform(tmp_path / "project")
    platform.project.mkdir()
    platform.deploy()
    try:
        platform.workspace("lost")
        code = tiny_train_bundle(tmp_path / "code", "import time\nprint('running', flush=True)\ntime.sleep(300)\n")
        assert platform.kaos("train", "deploy", "-s", str(code), "-d", str(tiny_data_bundle(tmp_path / "d"))).code == 0
        job_id = _latest(platform, "lost", "training")["job_id"]
        wait_for(lambda: "running" in platform.api("GET", f"train/lost/{job_id}/logs").json(), what="start")

        platform.kill_backend()
        state = next(p for p in platform.data_dir.glob(f"jobs/{job_id}/log"))
        # The runner leads its own session; a child it forks for a moment (a namespace probe, a workload between
        # fork and exec) shows the same command line but leads no group, and may be gone by the time it is killed.
        runner_sessions = _processes(lambda pid: "executors.runner" in _cmdline(pid) and job_id in _cmdline(pid)
                                     and os.getpgid(pid) == pid)
        assert runner_sessions
        for pid in runner_sessions:  # as if the machine rebooted: the workload is gone, no exit code written
            try:
                os.killpg(pid, 9)
            except ProcessLookupError:
                pass
        platform.deploy(force=True)
        job = wait_terminal(platform, "lost", job_id, timeout=60)
        assert job["state"] == "JOB_FAILURE"
        assert "disappeared" in state.read_text()
    finally:
        platform.destroy()


def test_destroy_ends_the_platforms_workloads(tmp_path):
    platform = LocalPlatform(tmp_path / "project")
    platform.project.mkdir()
    platform.deploy()
    destroyed = False
    try:
        platform.workspace("doomed")
        code = tiny_train_bundle(tmp_path / "code", "import time\nprint('running', flush=True)\ntime.sleep(300)\n")
        assert platform.kaos("train", "deploy", "-s", str(code), "-d", str(tiny_data_bundle(tmp_path / "d"))).code == 0
        job_id = _latest(platform, "doomed", "training")["job_id"]
        wait_for(lambda: "running" in platform.api("GET", f"train/doomed/{job_id}/logs").json(), what="start")
        data_dir = str(platform.data_dir)
        assert _processes(_cwd_under(data_dir))

        assert platform.kaos("destroy", "-c", "LOCAL", "-y").code == 0
        destroyed = True
        assert _processes(_cwd_under(data_dir)) == []
        assert _processes(lambda pid: data_dir in _cmdline(pid)) == []
    finally:
        if not destroyed:
            platform.destroy()
