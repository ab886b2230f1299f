"""Idle culling end to end on a LOCAL platform whose notebooks may be idle for IDLE_SECONDS
(KAOS_NOTEBOOK_IDLE_TIMEOUT; 8 h by default), and `kaos notebook logs -f` through the real CLI:

- a notebook nobody uses stops by itself (Jupyter's own culling), PIPELINE_STANDBY with a reason that says it was
  culled for idleness; `kaos notebook logs -f`, started while it ran, ends by itself once it is culled, with the
  server's last words in it; the file the test wrote through Jupyter's contents API is there when the user deploys
  the notebook again;
- a notebook used all along (a request through the gateway every USE_INTERVAL seconds, well within the idle time)
  still runs when the other one has been culled; `kaos notebook logs -f` on it is left with Ctrl-C, quietly.

Jupyter looks for idleness once a minute: the waits are bounds against hanging, never speed claims."""
import os
import signal
import subprocess
import threading

import pytest

from tests.support.cli import KAOS
from tests.support.notebooks import jupyter, notebook_row, token_of, wait_state
from tests.support.platform import LocalPlatform, wait_for

IDLE_SECONDS = 10
USE_INTERVAL = 1.0
CULL_WAIT = 600.0   # a bound against hanging


@pytest.fixture(scope="module")
def idle_platform(tmp_path_factory):
    platform = LocalPlatform(tmp_path_factory.mktemp("idle-notebooks") / "project")
    platform.project.mkdir()
    deployed = platform.kaos("build", "deploy", "-c", "LOCAL", "-y", "--port", str(platform.port),
                             env={"KAOS_NOTEBOOK_IDLE_TIMEOUT": str(IDLE_SECONDS)})
    assert deployed.code == 0, deployed
    yield platform
    platform.destroy()


def _deploy(platform, workspace: str) -> str:
    platform.workspace(workspace)
    result = platform.kaos("notebook", "deploy", timeout=300)
    assert result.code == 0, result
    return token_of(result.text)


def _follow_logs(platform, name: str) -> subprocess.Popen:
    """`kaos notebook logs -n <name> -f` in the project, its output piped."""
    env = dict(os.environ, USER="tester", COLUMNS="200")
    env.pop("KAOS_STATE_DIR", None)
    return subprocess.Popen([KAOS, "notebook", "logs", "-n", name, "-f"], cwd=platform.project, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _keep_using(gateway: str, name: str, token: str, stop: threading.Event, answers: list) -> None:
    while not stop.wait(USE_INTERVAL):
        answers.append(jupyter(gateway, name, "api/contents", token).status_code)


def test_an_idle_notebook_is_culled_keeping_its_work_and_one_in_use_is_not(idle_platform):
    platform = idle_platform
    gateway = f"http://127.0.0.1:{platform.port}"
    used_token = _deploy(platform, "inuse")
    used = "notebook-inuse-tester"
    idle_token = _deploy(platform, "idle")  # the current workspace is "idle" from here on
    idle = "notebook-idle-tester"
    wait_state(platform.api, "inuse", used, "PIPELINE_RUNNING")
    stop, answers = threading.Event(), []
    user = threading.Thread(target=_keep_using, args=(gateway, used, used_token, stop, answers), daemon=True)
    user.start()
    try:
        wait_state(platform.api, "idle", idle, "PIPELINE_RUNNING")
        saved = jupyter(gateway, idle, "api/contents/results.txt", idle_token, "PUT",
                        json={"type": "file", "format": "text", "content": "kept across culling\n"})
        assert saved.status_code in (200, 201), saved.text
        follow = _follow_logs(platform, idle)
        try:
            row = wait_state(platform.api, "idle", idle, "PIPELINE_STANDBY", timeout=CULL_WAIT)
            out, err = follow.communicate(timeout=120)  # the follow ends by itself once the notebook is culled
        finally:
            if follow.poll() is None:
                follow.kill()
        assert row["reason"].startswith("culled for idleness") and f"{IDLE_SECONDS:g} s" in row["reason"], row
        assert "work directory is kept" in row["reason"]
        assert follow.returncode == 0, err
        assert "No kernels for" in out and "shutting down" in out, out
        assert (platform.project / "idle" / "logs" / f"{idle}.log").read_text().strip() == out.strip()

        in_use = notebook_row(platform.api, "inuse", used)
        assert in_use["state"] == "PIPELINE_RUNNING" and answers and set(answers) == {200}, (in_use, answers)
    finally:
        stop.set()
        user.join(timeout=60)

    assert platform.kaos("workspace", "set", "-n", "inuse").code == 0
    following_used = _follow_logs(platform, used)
    wait_for(lambda: following_used.poll() is None and os.path.exists(platform.project / "inuse" / "logs"
                                                                      / f"{used}.log"), 60, what="the follow")
    following_used.send_signal(signal.SIGINT)  # a person's Ctrl-C: the normal way out of a running one's follow
    out, err = following_used.communicate(timeout=60)
    assert following_used.returncode == 0 and "Traceback" not in err, err
    assert "Log saved to" in err

    assert platform.kaos("workspace", "set", "-n", "idle").code == 0
    again = _deploy_again(platform)
    wait_state(platform.api, "idle", idle, "PIPELINE_RUNNING")
    kept = jupyter(gateway, idle, "api/contents/results.txt", again)
    assert kept.status_code == 200 and kept.json()["content"] == "kept across culling\n", kept.text
    assert platform.kaos("notebook", "kill", "-n", idle, "-y").code == 0
    assert platform.kaos("workspace", "set", "-n", "inuse").code == 0
    assert platform.kaos("notebook", "kill", "-n", used, "-y").code == 0


def _deploy_again(platform) -> str:
    result = platform.kaos("notebook", "deploy", timeout=300)  # replaces the culled one: no NOTEBOOK_EXISTS
    assert result.code == 0, result
    return token_of(result.text)
