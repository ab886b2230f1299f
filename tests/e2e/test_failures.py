"""Issue 7 acceptance, on a LOCAL platform through the real CLI: every finished workload says how it ended; a
workload is contained (whatever it started ends with it, nothing it left holds its job open); the platform's
secrets are out of its reach; a runner that dies leaves no server behind."""
import os
import re
import signal

import pytest
import requests

from kaos_backend.executors import containment
from tests.support.platform import LocalPlatform, tiny_data_bundle, tiny_train_bundle, wait_for, wait_terminal
from tests.support.supervision import alive

CGROUPS = containment.platform_parents("probe") is not None


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    deployed = LocalPlatform(tmp_path_factory.mktemp("failures-project"))
    deployed.deploy()
    yield deployed
    deployed.destroy()


def _train(platform, tmp_path, workspace, script, *options, requirements=""):
    """Deploy a tiny training whose `train` runs `script` (Python); its train job's id once it exists."""
    platform.workspace(workspace)
    code = tiny_train_bundle(tmp_path / "code", script, requirements)
    deployed = platform.kaos("train", "deploy", "-s", str(code), "-d", str(tiny_data_bundle(tmp_path / "data")),
                             *options)
    assert deployed.code == 0, deployed
    return wait_for(lambda: platform.jobs(workspace)["training"], what="the train job")[0]["job_id"]


def _log(platform, workspace, job_id):
    return platform.api("GET", f"train/{workspace}/{job_id}/logs").json()



def test_a_training_killed_by_a_signal_says_so_everywhere(platform, tmp_path):
    script = "import os\nprint('epoch 1', flush=True)\nos.kill(os.getpid(), 9)\n"
    job_id = _train(platform, tmp_path, "signalled", script)
    job = wait_terminal(platform, "signalled", job_id)
    assert job["state"] == "JOB_FAILURE"
    assert job["reason"] == "killed by signal 9 (SIGKILL)"

    listed = platform.kaos("train", "list")
    assert "reason" in listed.out and "killed by signal 9 (SIGKILL)" in listed.out, listed.out
    info = platform.kaos("train", "info", "-j", job_id)
    assert info.code == 0, info
    assert "Reason: killed by signal 9 (SIGKILL)" in info.out
    assert "Failed partitions: 1" in info.out and info.out.count("killed by signal 9 (SIGKILL)") == 2, info.out
    logs = platform.kaos("train", "logs", "-j", job_id).out.strip().splitlines()
    assert logs[-2].endswith("] epoch 1")
    assert logs[-1].endswith("] kaos: the training ended: killed by signal 9 (SIGKILL)")


@pytest.mark.skipif(not CGROUPS, reason="no writable cgroup hierarchy on this machine")
def test_a_training_over_its_memory_is_out_of_memory(platform, tmp_path):
    script = "print('allocating', flush=True)\nhog = bytearray(300 * 1024 * 1024)\nprint('survived')\n"
    job_id = _train(platform, tmp_path, "hungry", script, "--memory", "50Mi")
    job = wait_terminal(platform, "hungry", job_id)
    assert (job["state"], job["reason"]) == ("JOB_FAILURE", "out of memory (limit 50Mi)")
    log = _log(platform, "hungry", job_id)
    assert "survived" not in log and log.strip().endswith("kaos: the training ended: out of memory (limit 50Mi)")
    assert "out of memory (limit 50Mi)" in platform.kaos("train", "list").out


def test_kill_ends_what_the_training_started_in_its_own_session(platform, tmp_path):
    script = ("import subprocess, time\n"
              "sleeper = subprocess.Popen(['sleep', '611'], start_new_session=True)\n"
              "print('sleeper', sleeper.pid, flush=True)\n"
              "time.sleep(600)\n")
    job_id = _train(platform, tmp_path, "orphans", script)
    line = wait_for(lambda: re.search(r"sleeper (\d+)", _log(platform, "orphans", job_id)), what="the sleeper")
    sleeper = int(line.group(1))
    assert alive(sleeper)
    killed = platform.kaos("train", "kill", "-j", job_id)
    assert killed.code == 0, killed
    assert not alive(sleeper)
    job = platform.job("orphans", job_id)
    assert (job["state"], job["reason"]) == ("JOB_KILLED", "killed on request")


def test_what_a_training_leaves_running_does_not_hold_its_job(platform, tmp_path):
    """`sleep 120 &` holds the output pipe: the job still ends when `train` exits, and the sleep is stopped."""
    platform.workspace("background")
    code = tiny_train_bundle(tmp_path / "code", "")
    (code / "tiny" / "model" / "train").write_text("#!/bin/sh\nmkdir -p $1/model\ntouch $1/model/m\nsleep 120 &\n"
                                                   "echo started the sleep\nexit 0\n")
    deployed = platform.kaos("train", "deploy", "-s", str(code), "-d", str(tiny_data_bundle(tmp_path / "data")))
    assert deployed.code == 0, deployed
    job_id = wait_for(lambda: platform.jobs("background")["training"], what="the train job")[0]["job_id"]
    job = wait_terminal(platform, "background", job_id, timeout=60)  # well before the sleep would end
    assert job["state"] == "JOB_SUCCESS", _log(platform, "background", job_id)
    stopped = [line for line in _log(platform, "background", job_id).splitlines() if "kaos: stopped 1 process" in line]
    assert len(stopped) == 1 and "sleep 120" in stopped[0]
    assert not [pid for pid in map(int, re.findall(r"(\d+) sleep 120", stopped[0])) if alive(pid)]


def test_a_training_cannot_read_the_platforms_secrets(platform, tmp_path):
    """The database, the token files and the backend's environment are out of a training's reach."""
    script = ("import os, sys\n"
              "from pathlib import Path\n"
              "data = Path(sys.argv[1]).parents[3]\n"
              "targets = [data / 'kaos.db', data / 'token', data.parent / 'backend.log', data.parents[1] / 'config']\n"
              "for pid in os.listdir('/proc'):\n"
              "    try:\n"
              "        if pid.isdigit() and b'kaos_backend' in Path(f'/proc/{pid}/cmdline').read_bytes():\n"
              "            targets.append(Path(f'/proc/{pid}/environ'))\n"
              "    except OSError:\n"
              "        pass\n"
              "for target in targets:\n"
              "    try:\n"
              "        target.read_bytes()\n"
              "        print('READ', target)\n"
              "    except OSError as error:\n"
              "        print('refused', target, type(error).__name__)\n"
              "os.makedirs(sys.argv[1] + '/model')\n")
    job_id = _train(platform, tmp_path, "nosy", script)
    job = wait_terminal(platform, "nosy", job_id)
    log = _log(platform, "nosy", job_id)
    assert job["state"] == "JOB_SUCCESS", log
    assert "READ" not in log, log
    refused = re.findall(r"refused (\S+)", log)
    assert len(refused) >= 6, log  # 4 files, and the environment of the scheduler, the front and the API
    assert any(path.endswith("/environ") for path in refused)
    token = platform._context()["token"]
    assert token not in log


def test_a_script_with_windows_line_endings_gets_a_hint(platform, tmp_path):
    platform.workspace("crlf")
    code = tiny_train_bundle(tmp_path / "code", "")
    (code / "tiny" / "model" / "train").write_bytes(b"#!/usr/bin/env python3\r\nprint('hi')\r\n")
    deployed = platform.kaos("train", "deploy", "-s", str(code), "-d", str(tiny_data_bundle(tmp_path / "data")))
    assert deployed.code == 0, deployed
    job_id = wait_for(lambda: platform.jobs("crlf")["training"], what="the train job")[0]["job_id"]
    assert wait_terminal(platform, "crlf", job_id)["state"] == "JOB_FAILURE"
    log = _log(platform, "crlf", job_id)
    assert "Windows line endings" in log and "dos2unix train" in log


SERVE = """#!/usr/bin/env python3
import http.server, os
print('serving from', os.getpid(), flush=True)
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = str(os.getpid()).encode()
        self.send_response(200 if self.path == '/ping' and HAS_PING else 404)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.HTTPServer((os.environ['HOST'], int(os.environ['PORT'])), Handler).serve_forever()
"""


def _serve_bundle(root, has_ping: bool):
    model = root / "tiny" / "model"
    model.mkdir(parents=True)
    (root / "tiny" / "Dockerfile").write_text("FROM python:3.11-slim\n")
    serve = SERVE.replace("HAS_PING", str(has_ping))
    for name, text in (("__init__.py", ""), ("web-requirements.txt", ""), ("requirements.txt", ""), ("serve", serve)):
        (model / name).write_text(text)
    return root


def _deploy_endpoint(platform, workspace, source):
    """A new workspace and an endpoint of `source` in it: the endpoint's name."""
    platform.workspace(workspace)
    assert platform.kaos("serve", "deploy", "-s", str(source)).code == 0
    return wait_for(lambda: next((e["name"] for e in platform.api("GET", f"inference/{workspace}").json()["response"]
                                  ["endpoints"]), None), what="the endpoint")


def _endpoint(platform, name):
    workspace = name.split("-")[1]
    return next(e for e in platform.api("GET", f"inference/{workspace}").json()["response"]["endpoints"]
                if e["name"] == name)


def _runner_of(name):
    for pid in os.listdir("/proc"):
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
        except OSError:
            continue
        if b"executors.runner" in cmdline and name.encode() in cmdline:
            return int(pid)
    return None


def test_an_endpoint_whose_runner_dies_leaves_no_server_behind(platform, tmp_path):
    name = _deploy_endpoint(platform, "respawn", _serve_bundle(tmp_path / "ok", has_ping=True))
    wait_for(lambda: _endpoint(platform, name)["state"] == "PIPELINE_RUNNING", what="the endpoint to run")
    url = f"http://127.0.0.1:{platform.port}/{name}/ping"
    first = int(requests.get(url, timeout=30).text)
    os.kill(_runner_of(name), signal.SIGKILL)
    wait_for(lambda: not alive(first), timeout=30, what="the old server to be stopped")
    wait_for(lambda: _endpoint(platform, name)["restarts"] >= 1 and _endpoint(platform, name)["state"] ==
             "PIPELINE_RUNNING", what="the endpoint to run again")
    second = int(requests.get(url, timeout=30).text)
    assert second != first and not alive(first)
    logs = platform.kaos("serve", "logs", "-e", name).out
    assert "kaos: the endpoint ended: vanished" in logs
    assert platform.kaos("serve", "kill", "-e", name, input="y\n").code == 0


def test_an_endpoint_without_ping_runs_once_it_stays_up(platform, tmp_path):
    name = _deploy_endpoint(platform, "noping", _serve_bundle(tmp_path / "noping", has_ping=False))
    wait_for(lambda: "serving from" in platform.api("GET", f"inference/noping/{name}/logs").json(), what="the start")
    assert _endpoint(platform, name)["state"] in ("PIPELINE_STARTING", "PIPELINE_RUNNING")
    wait_for(lambda: _endpoint(platform, name)["state"] == "PIPELINE_RUNNING", what="the endpoint to run")
    assert _endpoint(platform, name)["restarts"] == 0
    assert requests.get(f"http://127.0.0.1:{platform.port}/{name}/anything", timeout=30).status_code == 404
    assert platform.kaos("serve", "kill", "-e", name, input="y\n").code == 0


def test_destroy_ends_a_daemon_that_left_the_data_directory(tmp_path):
    """A daemon that double-forked, changed to / and exec'd `sleep` names nothing of the platform: destroy still
    ends it (its cgroup, or its platform mark), and leaves no cgroup of the platform behind."""
    platform = LocalPlatform(tmp_path / "project")
    platform.project.mkdir()
    platform.deploy()
    destroyed = False
    try:
        script = ("import os, time\n"
                  "if os.fork() == 0:\n"
                  "    os.setsid()\n"
                  "    if os.fork() == 0:\n"
                  "        os.chdir('/')\n"
                  "        print('daemon', os.getpid(), flush=True)\n"
                  "        os.execvp('sleep', ['sleep', '900'])\n"
                  "    os._exit(0)\n"
                  "time.sleep(600)\n")
        job_id = _train(platform, tmp_path, "daemons", script)
        daemon = int(wait_for(lambda: re.search(r"daemon (\d+)", _log(platform, "daemons", job_id)),
                              what="the daemon").group(1))
        assert alive(daemon)
        from kaos_backend.config import platform_id
        platform_cgroups = containment.platform_groups(platform_id(platform.data_dir))
        assert platform.kaos("destroy", "-c", "LOCAL", "-y").code == 0
        destroyed = True
        assert not alive(daemon)
        assert not any(group.pids() for group in platform_cgroups)
        assert containment.platform_groups(platform_id(tmp_path / "project" / ".kaos" / "LOCAL" / "data")) == []
    finally:
        if not destroyed:
            platform.destroy()


def test_links_a_training_leaves_in_its_model_are_not_followed_by_the_platform(platform, tmp_path):
    """A training that plants links to root-only files in its model: serving it copies none of them (the copy
    is the backend's, as root), and the endpoint's log names what was left out."""
    secret = tmp_path / "root-only-secret"
    secret.write_text("the secret")
    secret.chmod(0o600)
    script = ("import os, sys\n"
              "model = sys.argv[1] + '/model'\n"
              "os.makedirs(model)\n"
              "open(model + '/model.pkl', 'w').write('weights')\n"
              f"os.symlink({str(secret)!r}, model + '/secret')\n"
              "os.symlink('/etc/shadow', model + '/shadow')\n"
              "os.makedirs(sys.argv[1] + '/metrics')\n"
              f"os.symlink({str(secret)!r}, sys.argv[1] + '/metrics/metrics.json')\n")
    job_id = _train(platform, tmp_path, "links", script)
    assert wait_terminal(platform, "links", job_id)["state"] == "JOB_SUCCESS", _log(platform, "links", job_id)
    info = platform.kaos("train", "info", "-j", job_id)
    model_id = re.search(r"\b[0-9a-f]{5}_[0-9a-f]{5}:[0-9a-f]{6}\b", info.out).group(0)
    assert "the secret" not in info.out
    serve = _serve_bundle(tmp_path / "serve", has_ping=True)
    (serve / "tiny" / "model" / "serve").write_text(
        "#!/bin/sh\nls -a\nfor f in secret shadow model.pkl; do cat $f || echo missing $f; done\n"
        + "\n".join(SERVE.splitlines()[1:]).join(["exec python3 - <<'EOF'\n", "\nEOF\n"]))
    before = {e["name"] for e in platform.api("GET", "inference/links").json()["response"]["endpoints"]}
    assert platform.kaos("serve", "deploy", "-s", str(serve), "-m", model_id).code == 0
    name = wait_for(lambda: next((e["name"] for e in platform.api("GET", "inference/links").json()["response"]
                                  ["endpoints"] if e["name"] not in before), None), what="the endpoint")
    wait_for(lambda: "weights" in platform.api("GET", f"inference/links/{name}/logs").json(), what="the serve output")
    logs = platform.kaos("serve", "logs", "-e", name).out
    assert "kaos: left out of the model's files: secret (a symbolic link); shadow (a symbolic link)" in logs
    assert "the secret" not in logs and "root:" not in logs
    assert "missing secret" in logs and "missing shadow" in logs
    assert platform.kaos("serve", "kill", "-e", name, input="y\n").code == 0
