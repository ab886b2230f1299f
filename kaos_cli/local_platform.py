"""The LOCAL platform: a detached `python -m kaos_backend serve` daemon on 127.0.0.1, started, watched and
stopped by `kaos build deploy -c LOCAL` / `kaos destroy -c LOCAL` (and the same daemon for DOCKER,
docker_platform.py)."""
import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from contextlib import contextmanager
from pathlib import Path
from typing import List, Optional

BACKEND_MODULES = ("flask", "sqlalchemy", "gunicorn", "kaos_backend")
BACKEND_MARKER = "kaos_backend"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def missing_backend_modules() -> List[str]:
    """The server-side modules that cannot be found (without importing them)."""
    missing = []
    for name in BACKEND_MODULES:
        try:
            if importlib.util.find_spec(name) is None:
                missing.append(name)
        except (ImportError, ValueError):
            missing.append(name)
    return missing


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Can a server bind `host:port` (with SO_REUSEADDR, like the backend's server)?"""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def backend_argv_for(*args: str) -> List[str]:
    """`kaos-backend <args>` run by this interpreter (the backend is installed beside the CLI for LOCAL)."""
    return [sys.executable, "-m", "kaos_backend", *args]


def backend_argv(host: str, port: int, data_dir) -> List[str]:
    return backend_argv_for("serve", "--host", host, "--port", str(port), "--data-dir", str(data_dir))


def start_daemon(argv: List[str], log_path, env: Optional[dict] = None) -> subprocess.Popen:
    """Start `argv` detached: its own session, stdin from /dev/null, stdout+stderr appended to `log_path`."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=dict(os.environ, **(env or {})), start_new_session=True, close_fds=True)


@contextmanager
def signals_held(signals=HELD_SIGNALS):
    """Run the block whole: SIGINT, SIGTERM or SIGHUP arriving meanwhile is delivered once it is done (its own
    handler then runs: KeyboardInterrupt for SIGINT). For starting the backend and recording its pid, which an
    interruption must not cut apart (a backend that runs and is recorded nowhere). Outside the main thread (where
    Python cannot handle signals) the block simply runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = {sig: signal.signal(sig, lambda number, _frame: received.append(number)) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(received):
            signal.raise_signal(sig)


def health_problem(url: str, token: Optional[str], timeout: float = 2.0, advice: Optional[str] = None):
    """None when `GET <url>health` answers 2xx with this token (within `timeout` seconds), else the
    `KaosError` it raised: a `PlatformUnhealthy` when the backend answers that a part of it is not up."""
    from kaos_cli.client import KaosClient
    from kaos_cli.errors import KaosError

    try:
        KaosClient(url, token, unhealthy_advice=advice).health(timeout=timeout)
    except KaosError as problem:
        return problem
    return None


def health_answers(url: str, token: Optional[str], timeout: float = 2.0) -> bool:
    """Does `GET <url>health` answer 2xx with this token (within `timeout` seconds)?"""
    return health_problem(url, token, timeout) is None


def wait_until_up(process: subprocess.Popen, url: str, token: str, timeout: float = START_TIMEOUT) -> Optional[str]:
    """Poll health until it answers 200, every part of the backend up, or 503 naming only the engine its workloads
    run on (the backend is up; `engine_warning` says what of the engine): None; else, once the process has exited
    or `timeout` has passed, what was wrong last (the exit, or the health route's message)."""
    deadline = time.monotonic() + timeout
    problem = "it did not answer"
    while time.monotonic() < deadline:
        code = process.poll()
        if code is not None:
            return f"the backend exited with code {code}"
        error = health_problem(url, token)
        if error is None or getattr(error, "part", None) == "engine":
            return None
        if getattr(error, "status", None) == 503:
            problem = error.message
        time.sleep(0.2)
    return f"not up after {timeout:.0f} s: {problem}"


def engine_warning(url: str, token: Optional[str]) -> Optional[str]:
    """The health's message when the only part of an up backend that is not up is the engine its workloads run on
    ("The Docker engine has not answered POST ... since ..."), else None."""
    error = health_problem(url, token)
    return error.message if error is not None and getattr(error, "part", None) == "engine" else None


def _reap(pid: int) -> bool:
    """Reap `pid` if it is our exited child; True when it is gone as a child (or was never ours)."""
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return reaped == pid


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


def pid_alive(pid: Optional[int]) -> bool:
    """Does a (non-zombie) process `pid` exist?"""
    if not pid or pid <= 0:
        return False
    if _reap(pid):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def command_line(pid: int) -> Optional[str]:
    """The command line of `pid` (Linux /proc, else `ps`), or None when it cannot be read."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        pass
    try:
        result = subprocess.run(["ps", "-p", str(pid), "-o", "command="], capture_output=True, text=True,
                                timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def is_ours(pid: int, marker: str = BACKEND_MARKER) -> bool:
    """Is `pid` still the process we started (guards against a recycled pid)? Unknown counts as ours."""
    line = command_line(pid)
    return line is None or marker in line


def is_running(pid: Optional[int], url: str, token: Optional[str]) -> bool:
    """Liveness of a LOCAL platform: its pid is alive AND its health route answers."""
    return pid_alive(pid) and health_answers(url, token)


def stop(pid: Optional[int], timeout: float = STOP_TIMEOUT, marker: str = BACKEND_MARKER) -> bool:
    """SIGTERM the daemon's process group, wait up to `timeout`, then SIGKILL. A process that is already gone
    (or a pid now used by another program) is not an error. True when something was stopped."""
    if not pid_alive(pid) or not is_ours(pid, marker):
        return False
    _signal_group(pid, signal.SIGTERM)
    if _wait_gone(pid, timeout):
        return True
    _signal_group(pid, signal.SIGKILL)
    _wait_gone(pid, 5.0)
    return True


def unrecorded_backends(data_dir, recorded_pid: Optional[int]) -> List[int]:
    """The running backends of the data directory `data_dir` other than `recorded_pid` (the one the project's config
    names): the one its pid file names (its start time checked against a recycled pid), and any
    `kaos_backend serve` whose command line names `data_dir` (started by a kaos that wrote no pid file). A deploy
    interrupted before it wrote its record, or a lost `.kaos/config`, leaves such a backend."""
    from kaos_backend import pid_file  # standard library only, as is runtime_dir: shipped with the CLI
    from kaos_backend.runtime_dir import process_start_ticks

    found = []
    pid, ticks = pid_file.read(data_dir)
    if pid and pid_alive(pid) and is_ours(pid) and (ticks is None or process_start_ticks(pid) in (None, ticks)):
        found.append(pid)
    root = os.path.realpath(data_dir)
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if entry.isdigit() and int(entry) not in found and _serves(int(entry), root) and pid_alive(int(entry)):
            found.append(int(entry))
    return [pid for pid in found if pid != recorded_pid]


def _serves(pid: int, root: str) -> bool:
    """Is `pid` a `kaos_backend serve --data-dir <root>`?"""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            argv = handle.read().decode(errors="replace").split("\0")
    except OSError:
        return False
    if "kaos_backend" not in argv or "serve" not in argv or "--data-dir" not in argv[:-1]:
        return False
    return os.path.realpath(argv[argv.index("--data-dir") + 1]) == root


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    return not pid_alive(pid)


_LOG_PREFIX = re.compile(r"^\[[^\]]*\] \[\d+\] \[[A-Z]+\] [\w.]+: ")
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b: ")


def display_path(path) -> str:
    """`path` relative to the working directory when it is below it, else as it is."""
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if relative.startswith("..") else relative


def log_size(log_path) -> int:
    try:
        return os.path.getsize(log_path)
    except OSError:
        return 0


def failure_cause(log_path, offset: int = 0) -> Optional[str]:
    """Why a backend that failed to start stopped, from its log after `offset`: the supervisor's "The <part>
    cannot start: ..." line, else an `Error - ...` line, else an exception's line, else the last line."""
    try:
        with open(log_path, "rb") as handle:
            handle.seek(offset)
            text = handle.read()[-256 * 1024:].decode("utf-8", "replace")
    except OSError:
        return None
    return cause_in_log(text)


def cause_in_log(text: str) -> Optional[str]:
    """Why a backend stopped, from the text of its log (as `failure_cause` reads it from a file; the Kubernetes
    platform reads it from the backend pod's previous log): None for an empty log."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for matches in (lambda line: " cannot start: " in line, lambda line: line.startswith("Error - "),
                    lambda line: _EXCEPTION_LINE.match(line)):
        for line in reversed(lines):
            if matches(line):
                return _LOG_PREFIX.sub("", line).replace("Error - ", "", 1)
    return _LOG_PREFIX.sub("", lines[-1]) if lines else None


def log_tail(log_path, lines: int = 5) -> List[str]:
    try:
        with open(log_path, "r", encoding="utf-8", errors="replace") as handle:
            return [line.rstrip("\n") for line in deque(handle, maxlen=lines)]
    except OSError:
        return []


def local_dir(kaos_state_dir, context: str = "LOCAL") -> Path:
    """Where the backend daemon of `context` (LOCAL, DOCKER) keeps its data and log: `<.kaos>/<context>`."""
    return Path(kaos_state_dir) / context


def workload_pids(data_dir) -> List[int]:
    """Processes of the platform's jobs and endpoints: their command line names a path in its data directory
    (the runner's log) or they work inside it (user code, and whatever it started)."""
    root = os.path.realpath(data_dir)
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read().decode(errors="replace")
            cwd = os.path.realpath(f"/proc/{entry}/cwd")
        except OSError:
            continue
        if root in cmdline or cwd == root or cwd.startswith(root + os.sep):
            if not _is_zombie(int(entry)):
                found.append(int(entry))
    return found


def stop_workloads(data_dir, timeout: float = 10.0) -> int:
    """Stop every job and endpoint process of a LOCAL platform (they outlive the daemon by design, so that a
    restart loses nothing; destroying the platform must end them): the backend's `stop-workloads` (their
    cgroups, wherever the processes went), then any process left that names or works in the data directory.
    Returns how many of those could not be stopped."""
    try:
        subprocess.run(backend_argv_for("stop-workloads", "--data-dir", str(data_dir)), stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    except (OSError, subprocess.SubprocessError):
        pass  # the sweep below still runs
    pids = workload_pids(data_dir)
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + wait
        while workload_pids(data_dir) and time.monotonic() < deadline:
            time.sleep(0.1)
        pids = workload_pids(data_dir)
        if not pids:
            break
    return len(pids)
