"""`kaos build deploy|list|set|active` and `kaos destroy`. LOCAL deploys run a real detached daemon: a small
stand-in HTTP server whose file name contains `kaos_backend` (the real backend's end-to-end tests are the lead's)."""
import socket
import stat
import sys
import textwrap

import pytest

from kaos_cli import local_platform
from kaos_cli.state import Config
from tests.cli.conftest import free_port, one_line, write_config

FAKE_BACKEND = textwrap.dedent("""
    import json, os, sys
    from http.server import BaseHTTPRequestHandler, HTTPServer

    args = sys.argv[1:]
    port = int(args[args.index("--port") + 1])
    mode = os.environ.get("FAKE_BACKEND_MODE", "ok")
    print("fake backend starting on", port, "data", args[args.index("--data-dir") + 1], "executor",
          os.environ.get("KAOS_EXECUTOR"), "base image", os.environ.get("KAOS_BASE_IMAGE"), flush=True)
    if mode == "crash":
        for n in range(7):
            print(f"crash line {n}", flush=True)
        sys.exit(3)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            healthy = (mode == "ok" and self.path.split("?")[0] == "/api/health"
                       and self.headers.get("X-Token") == os.environ.get("KAOS_TOKEN"))
            body = json.dumps({"status": "ok"} if healthy else {"error_code": "X", "message": "no"}).encode()
            self.send_response(200 if healthy else 401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    HTTPServer(("127.0.0.1", port), Handler).serve_forever()
""")


@pytest.fixture
def fake_backend(tmp_path, monkeypatch):
    """`build deploy -c LOCAL` starts the stand-in instead of `python -m kaos_backend serve`."""
    script = tmp_path / "fake_kaos_backend.py"
    script.write_text(FAKE_BACKEND)
    monkeypatch.setattr(local_platform, "missing_backend_modules", lambda: [])
    monkeypatch.setattr(local_platform, "backend_argv", lambda host, port, data_dir: [
        sys.executable, str(script), "serve", "--host", host, "--port", str(port), "--data-dir", str(data_dir)])
    started = []
    real_start = local_platform.start_daemon

    def start(*args, **kwargs):
        process = real_start(*args, **kwargs)
        started.append(process)
        return process

    monkeypatch.setattr(local_platform, "start_daemon", start)
    yield started
    for process in started:
        if process.poll() is None:
            local_platform.stop(process.pid, timeout=5, marker="")


def _deploy(kaos, port, *extra, input=None):
    return kaos("build", "deploy", "-c", "LOCAL", "--port", str(port), *extra, input=input)


def test_deploy_local_writes_the_context(kaos, project, fake_backend):
    port = free_port()
    result = _deploy(kaos, port, "-y")
    assert result.exit_code == 0, result.output
    url = f"http://127.0.0.1:{port}/api/"
    assert result.output.splitlines() == [f"Info - Endpoint successfully set to {url}",
                                          "Info - Successfully built kaos environment"]
    process, = fake_backend
    config = Config.load()
    local = config.context("LOCAL")
    assert config.active == "LOCAL" and config.contexts == ["LOCAL"] and config.user == "tester"
    assert local["url"] == url and local["kind"] == "local" and len(local["token"]) == 32
    assert int(local["pid"]) == process.pid and int(local["port"]) == port
    assert local["data_dir"] == str((project / ".kaos" / "LOCAL" / "data").resolve())
    assert local["log"] == str((project / ".kaos" / "LOCAL" / "backend.log").resolve())
    assert "fake backend starting" in (project / ".kaos" / "LOCAL" / "backend.log").read_text()
    assert stat.S_IMODE((project / ".kaos" / "config").stat().st_mode) == 0o600
    assert local_platform.is_running(process.pid, url, local["token"])

    assert kaos("build", "active").output.strip() == "Info - Active context is - LOCAL"
    assert "| 0     | LOCAL   | LOCAL    | local |" in kaos("build", "list").output

    again = _deploy(kaos, port, "-y")
    assert one_line(again) == "Aborting - kaos backend is already built."

    forced = _deploy(kaos, port, "-y", "-f")
    assert forced.exit_code == 0, forced.output
    assert "Warning - Performing force build of the backend" in forced.output
    old, new = fake_backend
    assert not local_platform.pid_alive(old.pid) and local_platform.pid_alive(new.pid)
    assert int(Config.load().context("LOCAL")["pid"]) == new.pid

    destroyed = kaos("destroy", "-c", "LOCAL", "-y")
    assert destroyed.exit_code == 0, destroyed.output
    assert destroyed.output.strip() == "Info - Successfully destroyed kaos environment"
    assert not local_platform.pid_alive(new.pid)
    assert not (project / ".kaos" / "LOCAL").exists()
    config = Config.load()
    assert config.contexts == [] and config.active is None
    assert one_line(kaos("destroy", "-c", "LOCAL", "-y")) == \
        "Warning - kaos backend in LOCAL has not been deployed!"


def test_deploy_asks_first(kaos, project, fake_backend):
    refused = _deploy(kaos, free_port(), input="n\n")
    assert refused.exit_code == 1
    assert "Warning - Are you sure about building kaos backend in LOCAL? [y/N]" in refused.output
    assert "Aborted!" in refused.output
    assert fake_backend == [] and not (project / ".kaos" / "config").exists()


def test_deploy_keeps_other_contexts_and_destroy_leaves_them(kaos, project, fake_backend, server):
    write_config(project, f"[default]\nuser = alice\n[contexts]\nenvironments = remote\n[active]\n"
                          f"environment = remote\n[context:remote]\nurl = {server.url}\ntoken = s\nkind = remote\n")
    assert _deploy(kaos, free_port(), "-y").exit_code == 0
    config = Config.load()
    assert config.contexts == ["remote", "LOCAL"] and config.active == "LOCAL" and config.user == "alice"
    listed = kaos("build", "list").output
    assert "| 0     | remote  | remote   | remote |" in listed and "| 1     | LOCAL   | LOCAL    | local  |" in listed

    assert kaos("build", "set", "-c", "remote").output.strip() == "Info - Successfully set to context - remote"
    assert kaos("destroy", "-c", "LOCAL", "-y").exit_code == 0
    config = Config.load()
    assert config.contexts == ["remote"] and config.active == "remote"
    assert config.context("remote")["url"] == server.url
    assert server.requests == []  # destroy never talks to another context's backend


def test_deploy_fails_when_the_daemon_exits(kaos, project, fake_backend, monkeypatch):
    monkeypatch.setenv("FAKE_BACKEND_MODE", "crash")
    result = _deploy(kaos, free_port(), "-y")
    assert result.exit_code == 1
    assert result.output.splitlines() == ["Error - Deployment Unsuccessful while creating kaos LOCAL environment: "
                                          "crash line 6 (see .kaos/LOCAL/backend.log)"]
    assert Config.load().context("LOCAL") is None


def test_deploy_fails_and_stops_a_daemon_that_never_gets_healthy(kaos, project, fake_backend, monkeypatch):
    monkeypatch.setenv("FAKE_BACKEND_MODE", "unhealthy")
    monkeypatch.setattr(local_platform, "START_TIMEOUT", 1.5)
    result = _deploy(kaos, free_port(), "-y")
    assert result.exit_code == 1
    assert result.output.startswith("Error - Deployment Unsuccessful while creating kaos LOCAL environment")
    process, = fake_backend
    assert not local_platform.pid_alive(process.pid)
    assert Config.load().context("LOCAL") is None


@pytest.mark.parametrize("context", ["LOCAL", "DOCKER"])
def test_deploy_port_in_use_says_how_to_choose_another(kaos, project, fake_backend, engine_ready, context):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert one_line(kaos("build", "deploy", "-c", context, "--port", str(port), "-y")) == (
            f"Warning - Network port {port} is used but is needed for building kaos backend in {context} - give it "
            f"a free port with kaos build deploy -c {context} --port <port>")
    assert fake_backend == []


def test_deploy_needs_the_backend_installed(kaos, project, monkeypatch):
    monkeypatch.setattr(local_platform, "missing_backend_modules", lambda: ["flask"])
    assert one_line(_deploy(kaos, free_port(), "-y")) == \
        "Error - The LOCAL platform needs the backend: pip install 'kaos[backend]'"


def test_env_and_local_backend_flags_are_ignored_for_local(kaos, project, fake_backend):
    result = _deploy(kaos, free_port(), "-y", "-e", "dev", "-l")
    assert result.exit_code == 0, result.output
    assert "Warning - ENV (-e/--env) is not applicable for LOCAL deployment" in result.output
    assert "Info - local backend (-l/--local_backend) has no effect for LOCAL" in result.output


# -- DOCKER: the same daemon with KAOS_EXECUTOR=docker (the real engine's tests are tests/docker/test_platform.py) --
@pytest.fixture
def engine_ready(monkeypatch):
    """`kaos-backend docker-check` answers: the engine is there (a list of the base images it was asked about)."""
    from kaos_cli import docker_platform

    asked = []
    monkeypatch.setattr(docker_platform, "engine_problem", lambda base_image: asked.append(base_image))
    return asked


def _deploy_docker(kaos, port, *extra, input=None):
    return kaos("build", "deploy", "-c", "DOCKER", "--port", str(port), *extra, input=input)


def test_deploy_docker_beside_local(kaos, project, fake_backend, engine_ready, monkeypatch):
    monkeypatch.setenv("KAOS_EXECUTOR", "docker")  # LOCAL still means the local executor
    monkeypatch.setenv("KAOS_BASE_IMAGE", "from-the-environment:1")
    local_port, docker_port = free_port(), free_port()
    assert _deploy(kaos, local_port, "-y").exit_code == 0
    result = _deploy_docker(kaos, docker_port, "-y", "--base-image", "base:tag")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [f"Info - Endpoint successfully set to http://127.0.0.1:{docker_port}/api/",
                                          "Info - Successfully built kaos environment"]
    assert engine_ready == ["base:tag"]
    config = Config.load()
    docker = config.context("DOCKER")
    assert config.contexts == ["LOCAL", "DOCKER"] and config.active == "DOCKER"
    assert docker["kind"] == "local" and docker["executor"] == "docker" and int(docker["port"]) == docker_port
    assert docker["data_dir"] == str((project / ".kaos" / "DOCKER" / "data").resolve())
    assert config.context("LOCAL")["executor"] == "local"
    assert "executor docker base image base:tag" in (project / ".kaos" / "DOCKER" / "backend.log").read_text()
    assert "executor local" in (project / ".kaos" / "LOCAL" / "backend.log").read_text()
    listed = kaos("build", "list").output
    assert "| 0     | LOCAL   | LOCAL    | local |" in listed and "| 1     | DOCKER  | DOCKER   | local |" in listed
    local, docker_process = fake_backend
    assert local_platform.pid_alive(local.pid) and local_platform.pid_alive(docker_process.pid)

    again = _deploy_docker(kaos, docker_port, "-y")
    assert one_line(again) == "Aborting - kaos backend is already built."
    monkeypatch.delenv("KAOS_BASE_IMAGE")
    forced = _deploy_docker(kaos, free_port(), "-y", "-f")
    assert forced.exit_code == 0, forced.output
    assert engine_ready == ["base:tag", None]
    assert "executor docker base image None" in (project / ".kaos" / "DOCKER" / "backend.log").read_text()
    assert local_platform.pid_alive(local.pid) and not local_platform.pid_alive(docker_process.pid)
    assert kaos("destroy", "-c", "LOCAL", "-y").exit_code == 0
    assert Config.load().contexts == ["DOCKER"]


def test_deploy_docker_stops_at_the_engine_check_and_changes_nothing(kaos, project, fake_backend, monkeypatch):
    from kaos_cli import docker_platform

    monkeypatch.setattr(docker_platform, "engine_problem", lambda base_image: None)
    assert _deploy_docker(kaos, free_port(), "-y").exit_code == 0
    before = (project / ".kaos" / "config").read_text()
    monkeypatch.setattr(docker_platform, "engine_problem", lambda base_image: "no Docker engine answers at X (why)")
    failed = _deploy_docker(kaos, free_port(), "-y", "-f")
    assert failed.exit_code == 1 and failed.output.splitlines() == [
        "Warning - Performing force build of the backend",
        "Error - Deployment Unsuccessful while creating kaos DOCKER environment: no Docker engine answers at X (why)"]
    running, = fake_backend  # the platform built before is untouched: still running, still the context
    assert local_platform.pid_alive(running.pid) and (project / ".kaos" / "config").read_text() == before


def test_deploy_docker_needs_the_docker_sdk(kaos, project, monkeypatch):
    from kaos_cli import docker_platform

    monkeypatch.setattr(local_platform, "missing_backend_modules", lambda: [])
    monkeypatch.setattr(docker_platform, "sdk_missing", lambda: True)
    assert one_line(_deploy_docker(kaos, free_port(), "-y")) == \
        "Error - The DOCKER platform needs the docker SDK: pip install 'kaos[docker]'"


def test_base_image_has_no_effect_for_local(kaos, project, fake_backend):
    result = _deploy(kaos, free_port(), "-y", "--base-image", "x:1")
    assert result.exit_code == 0 and "Info - base image (--base-image) has no effect for LOCAL" in result.output


def test_destroy_docker_while_no_engine_answers(kaos, project, fake_backend, engine_ready, tmp_path, monkeypatch):
    """The real `kaos-backend destroy-platform` against a socket nothing listens on: the backend is stopped and the
    context removed; a destroy says so in one line and says how to finish, until it can."""
    assert _deploy_docker(kaos, free_port(), "-y").exit_code == 0
    process, = fake_backend
    dead = f"unix://{tmp_path / 'no-engine.sock'}"
    monkeypatch.setenv("DOCKER_HOST", dead)
    for attempt in range(2):
        line = one_line(kaos("destroy", "-c", "DOCKER", "-y"))
        assert line.startswith("Error - Destroy operation unsuccessful for kaos DOCKER environment: the backend is "
                               f"stopped and its context removed, but no Docker engine answers at {dead} ("), line
        assert line.endswith("- run `kaos destroy -c DOCKER` again once the engine runs"), line
        assert not local_platform.pid_alive(process.pid)
        config = Config.load()
        assert config.contexts == [] and config.active is None
        assert [path.name for path in (project / ".kaos" / "DOCKER").iterdir()] == ["leftovers"]


def test_destroy_docker_asks_first(kaos, project):
    write_config(project, "[contexts]\nenvironments = DOCKER\n[active]\nenvironment = DOCKER\n[context:DOCKER]\n"
                          "url = http://127.0.0.1:1/api/\ntoken = t\nkind = local\nexecutor = docker\npid = 0\n")
    refused = kaos("destroy", "-c", "DOCKER", input="n\n")
    assert refused.exit_code == 1
    assert "Warning - Are you sure about destroying kaos backend in DOCKER? [y/N]" in refused.output
    assert Config.load().contexts == ["DOCKER"]
    assert one_line(kaos("destroy", "-c", "LOCAL", "-y")) == "Warning - kaos backend in LOCAL has not been deployed!"


@pytest.mark.parametrize("cloud", ["AWS", "GCP"])
def test_other_clouds_are_not_supported_yet(kaos, cloud):
    assert one_line(kaos("build", "deploy", "-c", cloud)) == \
        f"Error - Building kaos in {cloud} is not supported by this version yet"
    assert one_line(kaos("destroy", "-c", cloud, "-y")) == \
        f"Error - Building kaos in {cloud} is not supported by this version yet"


def test_unknown_cloud_is_a_usage_error(kaos):
    result = kaos("build", "deploy", "-c", "AZURE")
    assert result.exit_code == 2 and "Invalid value for '-c' / '--cloud'" in result.output


def test_destroy_asks_first(kaos, project):
    write_config(project, "[contexts]\nenvironments = LOCAL\n[active]\nenvironment = LOCAL\n[context:LOCAL]\n"
                          "url = http://127.0.0.1:1/api/\ntoken = t\nkind = local\npid = 0\n")
    refused = kaos("destroy", "-c", "LOCAL", input="n\n")
    assert refused.exit_code == 1
    assert "Warning - Are you sure about destroying kaos backend in LOCAL? [y/N]" in refused.output
    assert Config.load().contexts == ["LOCAL"]
    gone = kaos("destroy", "-c", "LOCAL", input="y\n")  # a daemon that is already gone is not an error
    assert gone.exit_code == 0 and "Info - Successfully destroyed kaos environment" in gone.output


# -- list / set / active ---------------------------------------------------------------------------------------
CONTEXTS = """[contexts]
environments = remote,AWS_prod,LOCAL
[active]
environment = {active}
[context:remote]
url = http://r/api/
token = t
kind = remote
[context:AWS_prod]
url = http://a/api/
token = t
kind = remote
[context:LOCAL]
url = http://127.0.0.1:8080/api/
token = t
kind = local
"""


def test_list_and_set(kaos, project):
    write_config(project, CONTEXTS.format(active=""))
    listed = kaos("build", "list")
    assert listed.exit_code == 0
    assert "| index | context  | provider | env    |" in listed.output
    assert "| 1     | AWS_prod | AWS      | prod   |" in listed.output
    assert kaos("build", "active").output.strip() == \
        "Warning - No active context set. Set an active context using `kaos build set`"

    assert kaos("build", "set", "-i", "1").output.strip() == "Info - Successfully set to context - AWS_prod"
    assert kaos("build", "active").output.strip() == "Info - Active context is - AWS_prod"
    assert one_line(kaos("build", "set", "-i", "3")) == \
        "Error - Index 3 invalid. It is not one of the existing deployments in kaos"
    assert one_line(kaos("build", "set", "-c", "GCP_dev")) == \
        "Error - Context GCP_dev invalid. It is not one of the existing deployments in kaos"
    both = kaos("build", "set", "-c", "LOCAL", "-i", "0")
    assert both.exit_code == 2 and "Illegal usage: --context is mutually exclusive with --ind" in both.output


def test_set_index_needs_list_first(kaos, project):
    write_config(project, CONTEXTS.format(active="remote"))
    assert one_line(kaos("build", "set", "-i", "0")) == \
        "Error - Index not available until running `kaos build list`"


def test_no_builds(kaos, project):
    message = "Warning - No active builds found. Please run kaos build deploy to deploy an environment"
    assert kaos("build", "list").output.strip() == message
    assert kaos("build", "active").output.strip() == message
    assert one_line(kaos("build", "set", "-c", "LOCAL")) == message
    assert not (project / ".kaos").exists()


def test_destroy_says_it_removes_the_data_when_that_takes_a_while(tmp_path, monkeypatch, capsys):
    """A platform's virtualenvs can take half a minute to delete once the backend is stopped: past
    TELL_AFTER_SECONDS the removal is said on stderr (stdout keeps 1.x's one line), and it still completes."""
    import shutil
    import threading

    from kaos_cli.commands import destroy as destroy_command

    home = tmp_path / "LOCAL"
    (home / "data").mkdir(parents=True)
    released = threading.Event()
    real_rmtree = shutil.rmtree

    def slow_rmtree(path, ignore_errors=False):
        released.wait(30)
        real_rmtree(path, ignore_errors=ignore_errors)

    monkeypatch.setattr(shutil, "rmtree", slow_rmtree)
    monkeypatch.setattr(destroy_command, "TELL_AFTER_SECONDS", 0.05)
    threading.Timer(0.5, released.set).start()
    destroy_command._remove_telling(home)
    captured = capsys.readouterr()
    assert not home.exists() and captured.out == ""
    assert captured.err.strip() == (f"Info - The backend is stopped; removing its data ({home}: virtualenvs, bundles, "
                                    "models, logs)...")


def test_the_leftovers_record_reads_back_any_path(tmp_path):
    """The record of an unfinished DOCKER destroy holds a path, which need not be UTF-8: read as text it once
    raised UnicodeDecodeError out of `kaos destroy`."""
    from kaos_cli import docker_platform

    home = tmp_path / "home"
    data_dir = tmp_path / "data-\udcff"  # a file name byte that is not UTF-8
    docker_platform.write_leftovers(home, data_dir)
    assert docker_platform.read_leftovers(home) == str(data_dir)
    (home / docker_platform.LEFTOVERS).write_bytes(b"/srv/kaos-\xff\n")
    assert docker_platform.read_leftovers(home) == "/srv/kaos-\udcff"
