"""`kaos-backend serve` as a supervisor: parts killed one at a time come back and health tells the truth
meanwhile; a part that cannot start stops the backend; no secret on a command line; stale runtime directories
go. A real backend on 127.0.0.1 (tests/support/backend.py), real signals."""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import requests

from kaos_backend import runtime_dir as runtime
from kaos_cli.client import KaosClient
from kaos_cli.errors import PlatformUnhealthy
from tests.support.backend import BackendProcess, free_port
from tests.support.supervision import (alive, broken_import_env, children, command_lines, runtime_dir, stat_fields,
                                       unix_get, wait_for)

ROOT = Path(__file__).resolve().parents[2]


def health(server):
    """(status, body) of GET /api/health through the front door."""
    response = server.get("health", timeout=30)
    return response.status_code, response.json()


def parts(server) -> dict:
    status, body = health(server)
    assert status == 200, body
    return body["parts"]


def up_again(server, name: str, old_pid: int):
    """Health 200 with every part up and `name` running as a new process: its new pid."""
    def check():
        status, body = health(server)
        return status == 200 and body["parts"][name]["pid"] != old_pid and body["parts"][name]["pid"]
    return wait_for(check, 15, f"the {name} to be back")


@pytest.fixture
def server(tmp_path):
    backend = BackendProcess(tmp_path / "data").start()
    yield backend
    backend.stop()


def test_health_reports_every_part(server):
    status, body = health(server)
    assert status == 200 and body["status"] == "ok"
    group = [pid for pid in (int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit())
             if (stat_fields(pid) or [0, 0, 0])[2] == str(server.process.pid)]
    for name in ("front", "api", "scheduler"):
        part = body["parts"][name]
        assert part["state"] == "up" and part["restarts"] == 0 and part["last_exit"] is None, body
        assert part["pid"] in group and stat_fields(part["pid"])[1] == str(server.process.pid)
    assert 0 <= body["parts"]["scheduler"]["heartbeat_age"] < 10
    assert requests.get(server.url + "health", timeout=30).status_code == 401  # the token is still needed


def test_killed_scheduler_is_down_then_back(server):
    old = parts(server)["scheduler"]["pid"]
    os.kill(old, signal.SIGKILL)

    def down():
        status, body = health(server)
        return status == 503 and body
    body = wait_for(down, 2, "health to say the scheduler is down")
    assert body["error_code"] == "PLATFORM_UNHEALTHY" and body["part"] == "scheduler"
    assert body["message"].startswith("The kaos backend's scheduler is "), body
    assert "killed by signal 9 (SIGKILL)" in body["message"], body
    try:  # the SDK's view of the same answer (unless the scheduler is back already)
        KaosClient(server.url, server.token, unhealthy_advice="see the log").health()
    except PlatformUnhealthy as unhealthy:
        assert unhealthy.part == "scheduler" and unhealthy.level == "Warning", unhealthy
        assert unhealthy.message.startswith("The kaos backend's scheduler is ") and \
            unhealthy.message.endswith("): see the log"), unhealthy
    new = up_again(server, "scheduler", old)
    assert parts(server)["scheduler"]["restarts"] == 1
    assert "The scheduler ended: killed by signal 9 (SIGKILL)" in server.log()
    assert alive(new) and not alive(old)


@pytest.mark.parametrize("name, setting", [("scheduler", "KAOS_SCHEDULER_HUNG_TIMEOUT"),
                                           ("front", "KAOS_FRONT_HUNG_TIMEOUT")])
def test_a_part_that_lives_but_no_longer_beats_is_killed_and_started_again(tmp_path, name, setting):
    """A stopped process (SIGSTOP) stands for any part that lives but no longer works (a deadlock, a call that
    never returns): past its hung timeout without a heartbeat the supervisor kills it and starts it again, and
    says why. Without it the scheduler stayed stopped, every workload with it; and (an attacker's finding) a stopped
    front held every client, a `kaos train logs -f` with no end among them. The front beats every second from its
    event loop (front.heartbeat in the runtime directory); its clients' connections close with it (a follow
    opens its log again: tests/e2e/test_train.py)."""
    backend = BackendProcess(tmp_path / "data", env={setting: "3"}).start()
    try:
        old = parts(backend)[name]["pid"]
        os.kill(old, signal.SIGSTOP)

        def replaced():
            try:
                status, body = health(backend)
            except OSError:  # (a stopped front leaves connections unanswered: the health's own timeout)
                return False
            return status == 200 and body["parts"][name]["pid"] != old and body["parts"][name]
        part = wait_for(replaced, 60, f"the hung {name} to be replaced")
        assert not alive(old)
        assert part["restarts"] == 1 and part["state"] == "up", part
        assert part["last_exit"].startswith("killed by signal 9 (SIGKILL): hung, no heartbeat for "), part
        assert f"The {name} is hung: no heartbeat for " in backend.log()
    finally:
        backend.stop()


def test_a_scheduler_is_not_killed_as_hung_when_the_timeout_is_0(tmp_path):
    """KAOS_SCHEDULER_HUNG_TIMEOUT=0: a stopped scheduler is left alone (the health says it is down)."""
    backend = BackendProcess(tmp_path / "data", env={"KAOS_SCHEDULER_HUNG_TIMEOUT": "0"}).start()
    try:
        old = parts(backend)["scheduler"]["pid"]
        os.kill(old, signal.SIGSTOP)
        body = wait_for(lambda: (lambda answer: answer[0] == 503 and answer[1])(health(backend)), 30,
                        "the health to say the scheduler is down")
        assert body["part"] == "scheduler" and "no heartbeat for" in body["message"], body
        def beatless_for():
            found = re.search(r"no heartbeat for (\d+) s", health(backend)[1].get("message", ""))
            return found is not None and int(found.group(1)) >= 6
        wait_for(beatless_for, 30, "6 s without a heartbeat")
        assert alive(old) and "is hung" not in backend.log()
        os.kill(old, signal.SIGCONT)
    finally:
        backend.stop()


def test_killed_front_is_restarted(server):
    old = parts(server)["front"]["pid"]
    api_socket = runtime_dir(server.log()) / runtime.API_SOCKET
    os.kill(old, signal.SIGKILL)
    # the public port is the front's: while it is down the API (on its own socket) says so
    status, body = wait_for(lambda: (lambda answer: answer[0] == 503 and answer)(
        unix_get(api_socket, "/api/health", server.token)), 5, "the API to report the front down")
    assert body["part"] == "front" and body["message"].startswith("The kaos backend's front is "), body
    up_again(server, "front", old)
    assert "The front ended: killed by signal 9 (SIGKILL)" in server.log()
    assert not alive(old)


def test_killed_api_master_is_restarted_and_its_workers_go(server):
    master = parts(server)["api"]["pid"]
    # gunicorn forks its workers one after the other: the first may answer before the second exists
    workers = wait_for(lambda: (lambda found: len(found) == 2 and found)(children(master)), 15,
                       "the API master's two workers")
    os.kill(master, signal.SIGKILL)

    def down():
        status, body = health(server)
        return status == 503 and body
    body = wait_for(down, 5, "health to say the api is down")
    assert body["error_code"] == "PLATFORM_UNHEALTHY" and body["part"] == "api", body
    assert body["message"].startswith("The kaos backend's api is "), body
    wait_for(lambda: not any(alive(pid) for pid in workers), 15, "the old master's workers to exit")
    up_again(server, "api", master)
    assert "The api ended: killed by signal 9 (SIGKILL)" in server.log()
    assert requests.get(server.url + "health", timeout=30).status_code == 401


def test_no_secret_on_any_command_line(tmp_path):
    token = "tok-" + os.urandom(8).hex()
    database_url = f"sqlite:///{tmp_path}/elsewhere/kaos-{os.urandom(4).hex()}.db"
    (tmp_path / "elsewhere").mkdir()
    server = BackendProcess(tmp_path / "data", token=token, env={"KAOS_DATABASE_URL": database_url}).start()
    try:
        def process_group():
            found = [pid for pid in command_lines()
                     if (stat_fields(pid) or [0, 0, 0])[2] == str(server.process.pid)]
            return len(found) == 6 and found  # supervisor, front, API master and two workers, scheduler
        group = wait_for(process_group, 15, "every part and worker to be started")
        lines = command_lines()
        for pid, line in lines.items():
            assert token.encode() not in line and database_url.encode() not in line, (pid, line)
            assert pid not in group or b"sqlite:" not in line, (pid, line)
        assert health(server)[0] == 200
    finally:
        server.stop()


def test_a_part_that_cannot_start_stops_the_backend(tmp_path):
    env = broken_import_env(tmp_path / "site", "kaos_backend.control")
    port, data = free_port(), tmp_path / "data"
    log_path = tmp_path / "backend.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "kaos_backend", "serve", "--port", str(port), "--data-dir",
                                    str(data)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   env=dict(os.environ, KAOS_TOKEN="t", **env), start_new_session=True)
    try:
        code = process.wait(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    log = log_path.read_text()
    assert code == 1, log
    assert ("The scheduler cannot start: ModuleNotFoundError: No module named 'kaos_backend.control' "
            "(3 attempts in a row): stopping the backend") in log, log
    assert log.count("The scheduler ended before it was up: exited with code 1") == 3, log
    assert "Traceback" in log  # the scheduler's own stderr is in the log too
    assert not runtime_dir(log).exists()
    wait_for(lambda: not [pid for pid in command_lines() if (stat_fields(pid) or [0, 0, 0])[2] == str(process.pid)
                          and alive(pid)], 15, "every part to be gone")


def test_sigterm_to_the_supervisor_alone_stops_every_part(server):
    members = [part["pid"] for part in parts(server).values()]
    members += children(parts(server)["api"]["pid"])
    run_dir = runtime_dir(server.log())
    os.kill(server.process.pid, signal.SIGTERM)
    assert server.process.wait(timeout=30) == 0
    wait_for(lambda: not any(alive(pid) for pid in members), 15, "every part to stop")
    assert not run_dir.exists()
    log = server.log()
    assert "did not stop" not in log and "was sent SIGKILL" not in log, log


def _owned_dir(root: Path, owner: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=runtime.PREFIX, dir=root))
    (path / runtime.OWNER_FILE).write_text(owner)
    return path


def test_start_removes_runtime_directories_of_dead_backends(tmp_path):
    # The backends' TMPDIR is a root of this test's (short: their API socket lives there): in the machine's /tmp,
    # a backend another test starts meanwhile (another xdist worker's) would remove the crashed backend's
    # directory before the second backend here could.
    root = Path(tempfile.mkdtemp(prefix="kaos-rt-"))
    env = {"TMPDIR": str(root)}
    mine = runtime.process_start_ticks(os.getpid())
    dead = _owned_dir(root, "999999999 1\n")                     # no such process
    recycled = _owned_dir(root, f"{os.getpid()} {mine + 1}\n")    # this pid, but not the process that wrote it
    living = _owned_dir(root, f"{os.getpid()} {mine}\n")
    try:
        first = BackendProcess(tmp_path / "data", env=env).start()
        crashed_dir = runtime_dir(first.log())
        assert crashed_dir.parent == root
        assert crashed_dir.is_dir() and runtime.owner_alive(crashed_dir)
        first.stop(signal.SIGKILL)                         # a crash: nobody removes its directory
        assert crashed_dir.is_dir()
        assert not dead.exists() and not recycled.exists() and living.is_dir()
        second = BackendProcess(tmp_path / "data", env=env).start()
        try:
            assert not crashed_dir.exists()
            assert f"Removed the runtime directory of a backend that is gone: {crashed_dir}" in second.log()
            assert living.is_dir()
        finally:
            second.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_scheduler_heartbeat_after_every_tick(tmp_path):
    beat = tmp_path / "beat"
    process = subprocess.Popen([sys.executable, "-m", "kaos_backend.scheduler", "--data-dir", str(tmp_path),
                                "--poll-interval", "0.05", "--heartbeat", str(beat)], cwd=ROOT,
                               stdout=subprocess.DEVNULL)
    try:
        wait_for(beat.exists, 30, "the first heartbeat")
        first = beat.stat().st_mtime_ns
        wait_for(lambda: beat.stat().st_mtime_ns > first, 30, "a later heartbeat")
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_killed_supervisor_takes_every_part_with_it(tmp_path):
    server = BackendProcess(tmp_path / "data").start()
    try:
        members = [part["pid"] for part in parts(server).values()]
        members += children(parts(server)["api"]["pid"])
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=30)
        wait_for(lambda: not any(alive(pid) for pid in members), 15, "every part to end with the supervisor")
    finally:
        server.stop(signal.SIGKILL)


def test_start_removes_interrupted_uploads(tmp_path):
    temporary = tmp_path / "data" / "blobs" / ".tmp"
    temporary.mkdir(parents=True)
    (temporary / "upload-cut-short").write_bytes(b"half a zip")
    server = BackendProcess(tmp_path / "data").start()
    try:
        assert list(temporary.iterdir()) == []
    finally:
        server.stop()


def test_sigterm_to_the_group_is_a_stop_not_deaths(tmp_path):
    for run in range(3):  # the parts and the supervisor get the signal together: whoever sees it first
        server = BackendProcess(tmp_path / f"data-{run}").start()
        server.stop()  # SIGTERM to the process group, as kaos destroy does
        assert server.process.returncode == 0
        log = server.log()
        assert " ended: " not in log and "Restarting" not in log, log
        assert log.count("stopped (") == 3, log


def test_a_scheduler_waiting_on_its_engine_within_the_bound_is_not_hung(tmp_path):
    """parts.scheduler_hung: an old heartbeat is hung unless the tick waits on its engine within that request's
    bound (and part_status.WAITING_GRACE_SECONDS); a timeout of 0 never says hung."""
    from kaos_backend.part_status import ENGINE_FILE, HEARTBEAT_FILE, write_status
    from kaos_backend.parts import scheduler_hung
    heartbeat = tmp_path / HEARTBEAT_FILE
    heartbeat.write_text("{}")
    beat = heartbeat.stat().st_mtime
    assert scheduler_hung(tmp_path, 60, now=beat + 30) is None
    assert scheduler_hung(tmp_path, 60, now=beat + 90) == "no heartbeat for 90 s"
    assert scheduler_hung(tmp_path, 0, now=beat + 9000) is None
    write_status(tmp_path / ENGINE_FILE, {"state": "waiting", "waiting": {"what": "POST /containers/create",
                                                                          "since": beat, "bound": 120}})
    assert scheduler_hung(tmp_path, 60, now=beat + 90) is None            # within 120 s + the grace
    assert scheduler_hung(tmp_path, 60, now=beat + 200) == "no heartbeat for 200 s"
