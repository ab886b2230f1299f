"""`kaos-backend serve` and the scheduler as processes: dependencies, token, configuration, shutdown."""
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from kaos_backend.cli import MISSING_DEPENDENCIES, resolve_token
from kaos_backend.config import Config, ConfigError
from tests.support.backend import BackendProcess, free_port
from tests.support.supervision import alive

ROOT = Path(__file__).resolve().parents[2]


def run_python(code: str, env=None, timeout=30):
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})))



def wait_gone(pids, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(pid) for pid in pids):
        time.sleep(0.1)
    return [pid for pid in pids if alive(pid)]


def group_members(pgid: int):
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry.name))
    return members


@pytest.mark.parametrize("module", ["flask", "sqlalchemy", "gunicorn"])
def test_missing_dependencies(module, tmp_path):
    code = (f"import sys; sys.modules[{module!r}] = None\n"
            f"from kaos_backend.cli import main; main(['serve', '--data-dir', {str(tmp_path)!r}])")
    result = run_python(code)
    assert result.returncode == 1
    assert (result.stdout + result.stderr).strip() == MISSING_DEPENDENCIES


def test_invalid_configuration_is_one_line(tmp_path):
    result = run_python(f"from kaos_backend.cli import main; main(['serve', '--data-dir', {str(tmp_path)!r}])",
                        env={"KAOS_MAX_CPU": "lots"})
    assert result.returncode == 1
    assert (result.stdout + result.stderr).strip() == "Error - KAOS_MAX_CPU must be a number, not 'lots'"


def test_token_from_environment_file_or_new(tmp_path):
    assert resolve_token(Config.from_env({}, data_dir=tmp_path, token="env")) == ("env", None)
    tmp_path.mkdir(exist_ok=True)
    config = Config.from_env({}, data_dir=tmp_path)
    token, path = resolve_token(config)
    assert path == tmp_path / "token" and len(token) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert resolve_token(config) == (token, path)  # kept across restarts
    path.write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        resolve_token(config)


def test_serve_prints_where_the_token_is(tmp_path):
    data_dir, port = tmp_path / "data", free_port()
    env = {key: value for key, value in os.environ.items() if key != "KAOS_TOKEN"}
    process = subprocess.Popen([sys.executable, "-m", "kaos_backend", "serve", "--port", str(port), "--data-dir",
                                str(data_dir), "--workers", "1"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        first = process.stdout.readline()
        assert first.strip() == f"Info - the API token (X-Token) is in {data_dir / 'token'}"
        token = (data_dir / "token").read_text().strip()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/api/health", headers={"X-Token": token}, timeout=1).ok:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        else:
            pytest.fail("the backend did not answer with the token of its file")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.communicate(timeout=15)
    assert process.returncode == 0


def test_sigterm_to_the_group_ends_everything(tmp_path):
    server = BackendProcess(tmp_path / "data").start()
    try:
        deadline = time.monotonic() + 15
        while (len(group_members(server.process.pid)) < 6 or "Scheduler started" not in server.log()) \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        members = group_members(server.process.pid)
        assert len(members) == 6, members  # supervisor, API master and two workers, scheduler, front door
        commands = [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in members]
        assert sum(b"kaos_backend.scheduler" in command for command in commands) == 1
        assert sum(b"kaos_backend.front" in command for command in commands) == 1
        assert sum(b"kaos_backend.api_server" in command for command in commands) == 3
    finally:
        server.stop()
    assert server.process.returncode == 0
    assert wait_gone(members) == []
    assert "Scheduler stopped" in server.log()


def test_scheduler_stops_on_sigterm(tmp_path):
    process = subprocess.Popen([sys.executable, "-m", "kaos_backend.scheduler", "--data-dir", str(tmp_path),
                                "--poll-interval", "0.1"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert "Scheduler started" in process.stdout.readline()
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=10)
    assert process.returncode == 0 and "Scheduler stopped" in out


def test_scheduler_exits_when_its_parent_is_gone(tmp_path):
    parent = (
        "import subprocess, sys\n"
        f"child = subprocess.Popen([sys.executable, '-m', 'kaos_backend.scheduler', '--data-dir', {str(tmp_path)!r},"
        " '--poll-interval', '0.1'], stdout=subprocess.DEVNULL)\n"
        "print(child.pid, flush=True)\n"
        "import time; time.sleep(1)\n"
    )
    result = run_python(parent)
    scheduler = int(result.stdout.strip())
    assert wait_gone([scheduler], timeout=10) == []


def test_scheduler_tick_survives_a_failing_task(tmp_path, caplog):
    from kaos_backend.scheduler import Scheduler
    scheduler = Scheduler(Config.from_env({}, data_dir=tmp_path))
    calls = []

    def broken():
        raise RuntimeError("task bug")

    scheduler.tasks += [broken, lambda: calls.append(1)]
    scheduler.tick()
    assert calls == [1] and "task bug" in caplog.text
