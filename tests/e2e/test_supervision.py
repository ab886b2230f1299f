"""The LOCAL platform under supervision, through the real CLI: a killed scheduler comes back and a job deployed
meanwhile finishes; a hung scheduler is reported by every health check and by `kaos build deploy`, which -f
rebuilds; a scheduler that cannot import makes `kaos build deploy` fail with the import error; destroy ends it
all. Waiting goes through the API, what the user sees through the CLI."""
import os
import signal
from pathlib import Path

import pytest

from tests.support.cli import assert_one_line_failure
from tests.support.platform import LocalPlatform, tiny_data_bundle, tiny_train_bundle, wait_terminal
from tests.support.supervision import alive, broken_import_env, children, command_lines, runtime_dir, wait_for

TRAIN_SCRIPT = ("import os, sys, time\nprint('tiny training started', flush=True)\ntime.sleep(3)\n"
                "os.makedirs(sys.argv[1] + '/model')\n")


@pytest.fixture
def platform(tmp_path):
    deployed = LocalPlatform(tmp_path / "project")
    deployed.project.mkdir()
    deployed.deploy()
    yield deployed
    deployed.destroy()


def health(platform):
    response = platform.api("GET", "health")
    return response.status_code, response.json()


def scheduler_pid(platform) -> int:
    status, body = health(platform)
    assert status == 200, body
    return body["parts"]["scheduler"]["pid"]


def test_killed_scheduler_comes_back_and_a_job_deployed_meanwhile_finishes(platform, tmp_path):
    platform.workspace("supervised")
    old = scheduler_pid(platform)
    os.kill(old, signal.SIGKILL)
    body = wait_for(lambda: (lambda answer: answer[0] == 503 and answer[1])(health(platform)), 2,
                    "health to name the killed scheduler")
    assert body["part"] == "scheduler" and body["error_code"] == "PLATFORM_UNHEALTHY", body

    code = tiny_train_bundle(tmp_path / "code", TRAIN_SCRIPT)
    deployed = platform.kaos("train", "deploy", "-s", str(code), "-d", str(tiny_data_bundle(tmp_path / "data")))
    assert deployed.code == 0, deployed
    wait_for(lambda: health(platform)[0] == 200, 10, "the scheduler to be back")
    assert scheduler_pid(platform) != old

    job_id = wait_for(lambda: (platform.jobs("supervised")["training"] or [None])[0], 600, "the training")["job_id"]
    wait_for(lambda: platform.job("supervised", job_id)["state"] == "JOB_RUNNING", 600, "the training to run")
    token = platform._context()["token"].encode()
    database_url = f"sqlite:///{platform.data_dir / 'kaos.db'}".encode()
    for pid, line in command_lines().items():  # the parts and the job's processes alike
        assert token not in line and database_url not in line, (pid, line)
    assert wait_terminal(platform, "supervised", job_id)["state"] == "JOB_SUCCESS"


def test_hung_scheduler_is_reported_and_force_rebuilds(platform):
    pid = scheduler_pid(platform)
    os.kill(pid, signal.SIGSTOP)  # alive, but its loop does not go round: no heartbeat
    try:
        body = wait_for(lambda: (lambda answer: answer[0] == 503 and answer[1])(health(platform)), 30,
                        "health to notice the missing heartbeat")
        assert body["part"] == "scheduler" and "no heartbeat for" in body["message"], body
        again = platform.kaos("build", "deploy", "-c", "LOCAL", "-y", "--port", str(platform.port))
        assert_one_line_failure(again)
        line = again.text.strip()
        assert line.startswith("Warning - kaos backend is already built, but unhealthy: The kaos backend's "
                               "scheduler is down (no heartbeat for "), line
        assert line.endswith("see .kaos/LOCAL/backend.log, or run kaos build deploy -c LOCAL -f to rebuild it"), line
        assert "already built." not in line
    finally:
        os.kill(pid, signal.SIGCONT)
    rebuilt = platform.deploy(force=True)
    assert "Info - Successfully built kaos environment" in rebuilt.out
    assert not alive(pid)
    assert health(platform)[0] == 200


def test_deploy_reports_a_scheduler_that_cannot_import(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    platform = LocalPlatform(project)
    env = broken_import_env(tmp_path / "site", "kaos_backend.control")
    result = platform.kaos("build", "deploy", "-c", "LOCAL", "-y", "--port", str(platform.port), env=env)
    try:
        assert_one_line_failure(result)
        line = result.text.strip()
        assert line.startswith("Error - Deployment Unsuccessful while creating kaos LOCAL environment: The scheduler "
                               "cannot start: ModuleNotFoundError: No module named 'kaos_backend.control'"), line
        assert line.endswith("(see .kaos/LOCAL/backend.log)"), line
        config = project / ".kaos" / "config"
        assert not config.exists() or "context:LOCAL" not in config.read_text()
        log = (project / ".kaos" / "LOCAL" / "backend.log").read_text()
        assert not runtime_dir(log).exists()
    finally:
        platform.kaos("destroy", "-c", "LOCAL", "-y")


def test_destroy_ends_every_process_and_the_runtime_directory(platform):
    status, body = health(platform)
    supervisor = int(platform._context()["pid"])
    pids = [supervisor] + [part["pid"] for part in body["parts"].values()] + children(body["parts"]["api"]["pid"])
    run_dir = runtime_dir((Path(platform._context()["log"])).read_text())
    destroyed = platform.kaos("destroy", "-c", "LOCAL", "-y")
    assert destroyed.code == 0 and "Info - Successfully destroyed kaos environment" in destroyed.out, destroyed
    wait_for(lambda: not any(alive(pid) for pid in pids), 15, "every process of the platform to end")
    assert not run_dir.exists()


def test_a_command_that_meets_a_down_api_says_so_and_what_to_run(platform):
    status, body = health(platform)
    supervisor = int(platform._context()["pid"])
    master = body["parts"]["api"]["pid"]
    workers = children(master)
    os.kill(supervisor, signal.SIGSTOP)  # nobody restarts the API meanwhile
    try:
        for pid in [master] + workers:
            os.kill(pid, signal.SIGKILL)
        listed = platform.kaos("workspace", "list")  # the front waits a while for the API, then gives up
        assert_one_line_failure(listed)
        assert listed.text.strip() == ("Warning - The kaos backend's api is not answering: "
                                       "see .kaos/LOCAL/backend.log, or run kaos build deploy -c LOCAL -f"), listed
    finally:
        os.kill(supervisor, signal.SIGCONT)
    wait_for(lambda: health(platform)[0] == 200, 30, "the api to be back")
    assert platform.kaos("workspace", "list").code == 0
