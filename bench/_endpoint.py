"""The parts bench/gateway.py and bench/front_instructions.py share: the mnist template's endpoint (its own `serve`
script in a virtualenv of its requirements, with a model its `train` made on the mini data set, both made once and
kept under build/bench-gateway/), a SQLite file naming it as a running endpoint, and the front
(`python -m kaos_backend.front`) in front of it."""
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from _timing import REPO

MNIST = REPO / "templates" / "mnist"
TRAIN_DIR = MNIST / "model-train" / "mnist" / "model"
SERVE_DIR = MNIST / "model-serve" / "mnist" / "model"
PAYLOAD = MNIST / "test_payload.jpg"
EXPECTED = {"result": [3]}
CACHE = REPO / "build" / "bench-gateway"
ENDPOINT = "serve-bench-abc123"
START_TIMEOUT = 60.0
TICKS = os.sysconf("SC_CLK_TCK")


class BenchFailure(Exception):
    pass


def run(command: List[str], **kwargs) -> None:
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)
    if result.returncode != 0:
        raise BenchFailure(f"{' '.join(map(str, command))} failed:\n{result.stdout[-3000:]}")


def template_env() -> Path:
    """A virtualenv with the template's train and serve requirements (made once, keyed by their bytes)."""
    files = [TRAIN_DIR / "requirements.txt", SERVE_DIR / "requirements.txt", SERVE_DIR / "web-requirements.txt"]
    key = hashlib.sha256(b"".join(path.read_bytes() for path in files)).hexdigest()[:16]
    env = CACHE / f"env-{key}"
    if not (env / ".complete").exists():
        print(f"making the template's virtualenv in {env} (once, not measured)...", flush=True)
        shutil.rmtree(env, ignore_errors=True)
        run([sys.executable, "-m", "venv", str(env)])
        run([str(env / "bin" / "pip"), "install", "-q", *[arg for path in files for arg in ("-r", str(path))]])
        (env / ".complete").touch()
    return env


def trained_model(env: Path) -> Path:
    """model.pkl from the template's train script on the template's mini data set (made once)."""
    key = hashlib.sha256((TRAIN_DIR / "train").read_bytes() + (TRAIN_DIR / "params.json").read_bytes()
                         + env.name.encode()).hexdigest()[:16]
    model = CACHE / f"model-{key}" / "model.pkl"
    if not model.exists():
        print("training the template's model (once, not measured)...", flush=True)
        with tempfile.TemporaryDirectory(prefix="kaos-bench-train-") as tmp:
            work, hyper, out = Path(tmp) / "model", Path(tmp) / "hyper", Path(tmp) / "out"
            shutil.copytree(TRAIN_DIR, work)
            hyper.mkdir()
            environ = {**os.environ, "PATH": f"{env / 'bin'}:{os.environ['PATH']}", "VIRTUAL_ENV": str(env),
                       "KAOS_TRAIN_DATA": str(MNIST / "data" / "features"), "KAOS_TRAIN_HYPER": str(hyper),
                       "KAOS_TRAIN_OUTPUT": str(out)}
            run([str(env / "bin" / "python"), "train", str(out)], cwd=work, env=environ)
            model.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(out / "model" / "model.pkl", model)
    return model


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def endpoint_database(path: Path, port: int, unix_socket: Optional[Path]) -> str:
    """A SQLite file with the backend's schema and one running endpoint at `port` (and `unix_socket`, where the
    schema has the column and it is not None): its URL."""
    from sqlalchemy import create_engine
    sys.path.insert(0, str(REPO))
    from kaos_backend.models import Base
    url = f"sqlite:///{path}"
    engine = create_engine(url)
    Base.metadata.create_all(engine)
    engine.dispose()
    with sqlite3.connect(path) as db:
        columns = {row[1]: row for row in db.execute("PRAGMA table_info(endpoints)")}
        values = {"name": ENDPOINT, "workspace_id": 1, "user": "bench", "state": "PIPELINE_RUNNING",
                  "desired": "run", "host": "127.0.0.1", "port": port,
                  "socket": str(unix_socket) if unix_socket is not None else None, "failures": 0,
                  "restarts": 0,
                  "created_at": "2024-01-01 00:00:00.000000"}
        values = {key: value for key, value in values.items() if key in columns}
        db.execute(f"INSERT INTO endpoints ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
                   list(values.values()))
    return url


def wait_for_answer(port: int, path: str, body: bytes) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    last = None
    while time.monotonic() < deadline:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            connection.request("POST", path, body=body, headers={"Content-Type": "image/jpeg"})
            response = connection.getresponse()
            text = response.read()
            if response.status == 200:
                if json.loads(text) != EXPECTED:
                    raise BenchFailure(f"POST {path} answered {text[:300]!r}, expected {EXPECTED}")
                return
            last = f"HTTP {response.status}: {text[:300]!r}"
        except (OSError, http.client.HTTPException) as error:
            last = repr(error)
        finally:
            connection.close()
        time.sleep(0.2)
    raise BenchFailure(f"POST 127.0.0.1:{port}{path} gave no good answer in {START_TIMEOUT:.0f} s: {last}")


def cpu_seconds(pids: List[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def tree(pid: int) -> List[int]:
    """`pid` and its descendants."""
    children: Dict[int, List[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    parent = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(children.get(current, []))
    return found


def start(command: List[str], log: Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(command, stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True,
                            **kwargs)


def stop(process: Optional[subprocess.Popen]) -> None:
    if process is not None and process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def start_front(tmp: Path, database: str, log_name: str, extra_env: Optional[Dict[str, str]] = None,
                wrapper: Tuple[str, ...] = ()):
    """`python -m kaos_backend.front` on a listening socket of its own, finding endpoints in `database`, its
    command prefixed by `wrapper` (e.g. valgrind's) where given: (the process, its port). It runs in `tmp`, so that
    `-m` finds kaos_backend where PYTHONPATH says, not in a checkout the shell stands in."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
    port = listener.getsockname()[1]
    env = {**os.environ, "KAOS_DATABASE_URL": database, "KAOS_TOKEN": "bench-token", "PYTHONPATH": str(REPO),
           **(extra_env or {})}
    process = start(list(wrapper) + [sys.executable, "-m", "kaos_backend.front", "--fd", str(listener.fileno()),
                                     "--api", str(tmp / "api.sock")], tmp / log_name, env=env, cwd=tmp,
                    pass_fds=[listener.fileno()])
    listener.close()
    return process, port


def post_script(tmp: Path) -> Path:
    """wrk's Lua script POSTing the template's test_payload.jpg."""
    script = tmp / "post.lua"
    script.write_text(f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "image/jpeg"\n'
                      f'local f = io.open("{PAYLOAD}", "rb")\nwrk.body = f:read("*a")\nf:close()\n')
    return script


def start_endpoint(tmp: Path, env: Path, model: Path, wrapper: Tuple[str, ...] = (),
                   extra_env: Optional[Dict[str, str]] = None) -> Tuple[subprocess.Popen, int, Path]:
    """The template's serve script on 127.0.0.1:<free port> and on a unix socket in `tmp`, its gunicorn command
    prefixed by `wrapper` (e.g. valgrind's) where given: (the process, its port, the socket's path)."""
    serve = tmp / "serve"
    shutil.copytree(SERVE_DIR, serve)
    shutil.copy(model, serve / "model.pkl")
    if wrapper:
        script = serve / "serve"
        script.write_text(script.read_text().replace("exec gunicorn", f"exec {' '.join(wrapper)} gunicorn"))
    port = free_port()
    socket_path = tmp / "endpoint.sock"
    endpoint_env = {**os.environ, "PATH": f"{env / 'bin'}:{os.environ['PATH']}", "VIRTUAL_ENV": str(env),
                    "HOST": "127.0.0.1", "PORT": str(port), "KAOS_SOCKET": str(socket_path), "PYTHONUNBUFFERED": "1",
                    **(extra_env or {})}
    return start([str(serve / "serve")], tmp / "endpoint.log", cwd=serve, env=endpoint_env), port, socket_path
