"""`kaos build deploy -c LOCAL` interrupted (Ctrl-C, SIGTERM, SIGHUP) while its backend starts, and a backend whose
record the project lost: the project can always reach and destroy what runs.

The window is held open deterministically: as soon as the CLI's backend child has exec'd, the test stops it (SIGSTOP
to its process group), so it cannot answer the CLI's health checks and the CLI is necessarily still waiting for it;
then the CLI gets the signal, and the backend is let go on (SIGCONT)."""
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest
import requests

from tests.support.backend import free_port
from tests.support.cli import KAOS, kaos
from tests.support.supervision import alive, command_lines, stat_fields, wait_for


def _backends_of(project: Path):
    """The `kaos_backend serve` processes whose data directory is in `project`."""
    found = []
    for pid, line in command_lines().items():
        argv = line.decode(errors="replace").split("\0")
        if "kaos_backend" in argv and "serve" in argv and any(str(project) in word for word in argv) and alive(pid):
            found.append(pid)
    return found


def _wait(predicate, what: str, timeout: float = 60.0):
    return wait_for(predicate, timeout, what, interval=0.01)


def _record(project: Path, field: str):
    config = project / ".kaos" / "config"
    found = re.search(rf"^{field}\s*=\s*(\S+)", config.read_text(), re.M) if config.exists() else None
    return found.group(1) if found else None


@pytest.fixture
def project(tmp_path):
    """A project directory; afterwards no backend of it is left running (the test's own `kaos destroy` must have
    stopped it: what is left here is killed and fails the test)."""
    project = tmp_path / "project"
    project.mkdir()
    yield project
    left = _backends_of(project)
    for pid in left:
        os.killpg(pid, signal.SIGCONT)
        os.killpg(pid, signal.SIGKILL)
    assert not left, f"backends left running: {left}"


def _interrupted_deploy(project: Path, port: int, sig: int, *extra: str):
    """`kaos build deploy -c LOCAL -y --port <port> <extra>` given `sig` while its backend is starting (held stopped
    meanwhile): (the CLI's CompletedProcess, the backend's pid)."""
    env = dict(os.environ, USER="tester", COLUMNS="200")
    env.pop("KAOS_STATE_DIR", None)
    cli = subprocess.Popen([KAOS, "build", "deploy", "-c", "LOCAL", "-y", "--port", str(port), *extra], cwd=project,
                           env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    try:
        def child():
            return next((pid for pid in _backends_of(project) if int((stat_fields(pid) or [0, 0])[1]) == cli.pid), None)
        backend = _wait(child, "the deploy's backend")
        os.killpg(backend, signal.SIGSTOP)
        try:
            cli.send_signal(sig)
            out, err = cli.communicate(timeout=60)
        finally:
            os.killpg(backend, signal.SIGCONT)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.communicate()
    return subprocess.CompletedProcess(cli.args, cli.returncode, out, err), backend


def _destroyed(project: Path, backend: int) -> None:
    destroyed = kaos(project, "destroy", "-c", "LOCAL", "-y")
    assert destroyed.code == 0, destroyed
    assert "Info - Successfully destroyed kaos environment" in destroyed.out
    _wait(lambda: not alive(backend), "the backend to stop", timeout=20)
    assert _backends_of(project) == []


def _reachable(project: Path, port: int) -> None:
    """The backend the config records answers with the config's token, and a command of the project works."""
    def answers():
        try:
            return requests.get(f"http://127.0.0.1:{port}/api/health", headers={"X-Token": _record(project, "token")},
                                timeout=5).ok
        except requests.ConnectionError:
            return False
    _wait(answers, "the recorded backend to answer")
    listed = kaos(project, "workspace", "list")
    assert listed.code == 0, listed


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["SIGINT", "SIGTERM", "SIGHUP"])
def test_a_first_deploy_interrupted_while_its_backend_starts_leaves_it_recorded(project, sig):
    port = free_port()
    interrupted, backend = _interrupted_deploy(project, port, sig)
    assert interrupted.returncode != 0, interrupted
    if sig == signal.SIGINT:
        assert interrupted.stderr.strip() == (
            f"Aborting - Interrupted while the backend was starting: it goes on starting (pid {backend}, "
            f"http://127.0.0.1:{port}/api/) and .kaos/config records it - kaos destroy -c LOCAL stops it")
    assert _record(project, "pid") == str(backend)
    assert _record(project, "environment") == "LOCAL"
    _reachable(project, port)
    _destroyed(project, backend)


def test_a_forced_redeploy_interrupted_while_its_backend_starts_records_the_new_one(project):
    port = free_port()
    assert kaos(project, "build", "deploy", "-c", "LOCAL", "-y", "--port", str(port)).code == 0
    old = int(_record(project, "pid"))
    interrupted, backend = _interrupted_deploy(project, port, signal.SIGINT, "-f")
    assert interrupted.returncode == 1, interrupted
    assert not alive(old)
    assert _record(project, "pid") == str(backend)
    _reachable(project, port)
    again = kaos(project, "build", "deploy", "-c", "LOCAL", "-y", "--port", str(port))
    assert again.code == 1 and "Aborting - kaos backend is already built." in again.err, again
    _destroyed(project, backend)


@pytest.mark.parametrize("lost", [[".kaos/config"], [".kaos/config", ".kaos/LOCAL/data/backend.pid"]],
                         ids=["config", "config-and-pid-file"])
def test_destroy_stops_a_backend_whose_record_was_lost(project, lost):
    """Found by the pid file the backend writes in its data directory, else (a backend of a kaos that wrote none)
    by its command line naming the data directory."""
    port = free_port()
    assert kaos(project, "build", "deploy", "-c", "LOCAL", "-y", "--port", str(port)).code == 0
    backend = int(_record(project, "pid"))
    for path in lost:
        (project / path).unlink()
    _destroyed(project, backend)
    again = kaos(project, "destroy", "-c", "LOCAL", "-y")
    assert again.code == 1 and "Warning - kaos backend in LOCAL has not been deployed!" in again.err, again


def test_deploy_replaces_a_backend_with_a_stale_record_only_with_force(project):
    """The config names a pid and token of an earlier backend; the one running is recorded nowhere."""
    port = free_port()
    assert kaos(project, "build", "deploy", "-c", "LOCAL", "-y", "--port", str(port)).code == 0
    backend = int(_record(project, "pid"))
    config = project / ".kaos" / "config"
    stale = re.sub(r"^token\s*=.*$", "token = stale", config.read_text(), flags=re.M)
    config.write_text(re.sub(r"^pid\s*=.*$", "pid = 999999999", stale, flags=re.M))

    refused = kaos(project, "build", "deploy", "-c", "LOCAL", "-y", "--port", str(port))
    assert refused.code == 1, refused
    assert refused.err.startswith(f"Warning - A kaos backend of this project runs that .kaos/config does not record "
                                  f"(pid {backend}, "), refused
    assert "kaos build deploy -c LOCAL -f replaces it, kaos destroy -c LOCAL stops it" in refused.err
    assert alive(backend)

    forced = kaos(project, "build", "deploy", "-c", "LOCAL", "-y", "-f", "--port", str(port))
    assert forced.code == 0, forced
    assert not alive(backend)
    new = int(_record(project, "pid"))
    _reachable(project, port)
    _destroyed(project, new)


def test_a_deploy_without_f_leaves_a_recorded_backend_that_is_still_starting(project):
    """An attacker's finding: right after an interrupted deploy, a second `build deploy` (no -f) stopped the
    recorded backend, still starting (not answering yet), and replaced it without a word. It now refuses."""
    port = free_port()
    interrupted, backend = _interrupted_deploy(project, port, signal.SIGINT)
    assert interrupted.returncode != 0, interrupted
    os.killpg(backend, signal.SIGSTOP)  # still starting, as far as anyone can tell
    try:
        again = kaos(project, "build", "deploy", "-c", "LOCAL", "-y", "--port", str(free_port()))
    finally:
        os.killpg(backend, signal.SIGCONT)
    assert again.code == 1 and again.err.strip().startswith(
        f"Warning - kaos backend in LOCAL runs (pid {backend}) but does not answer: "), again
    assert again.err.strip().endswith("- wait while it starts, or kaos build deploy -c LOCAL -f replaces it"), again
    assert alive(backend) and _record(project, "pid") == str(backend)
    _reachable(project, port)
    _destroyed(project, backend)
