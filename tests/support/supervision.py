"""Looking at a running backend's processes and parts from a test: its runtime directory, health asked of the
API's own unix socket (behind the front), /proc, and a sitecustomize that makes one module fail to import."""
import json
import re
import socket
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

BROKEN_IMPORT = '''\
import sys


class _RefuseModule:
    """Makes `import {module}` fail as it would if the module were missing from the installation."""

    def find_spec(self, name, path=None, target=None):
        if name == {module!r}:
            raise ModuleNotFoundError("No module named {module!r}", name=name)
        return None


sys.meta_path.insert(0, _RefuseModule())
'''


def broken_import_env(directory: Path, module: str) -> Dict[str, str]:
    """The environment that makes every Python process started with it fail to import `module`: a
    sitecustomize.py in `directory`, put on PYTHONPATH (the executors strip PYTHONPATH from workloads)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(BROKEN_IMPORT.format(module=module))
    return {"PYTHONPATH": str(directory)}


def runtime_dir(log: str) -> Path:
    """The runtime directory the supervisor named in its log."""
    found = re.findall(r"runtime directory (\S+)", log)
    assert found, log
    return Path(found[-1])


def unix_get(socket_path: Path, target: str, token: Optional[str] = None, timeout: float = 10.0) -> Tuple[int, dict]:
    """(status, JSON body) of `GET target` over a unix socket (the API's, without the front)."""
    head = f"GET {target} HTTP/1.1\r\nHost: kaos\r\nConnection: close\r\n"
    if token is not None:
        head += f"X-Token: {token}\r\n"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(socket_path))
        sock.sendall((head + "\r\n").encode())
        answer = b""
        while True:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    status_line, _, rest = answer.partition(b"\r\n")
    body = rest.split(b"\r\n\r\n", 1)[1]
    return int(status_line.split()[1]), json.loads(body)


def stat_fields(pid: int) -> Optional[List[str]]:
    """/proc/<pid>/stat after the command name: [state, ppid, pgrp, ...]; None when gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def alive(pid: int) -> bool:
    """Running (a zombie counts as gone)."""
    fields = stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def children(pid: int) -> List[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = stat_fields(int(entry.name))
            if fields and int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def command_lines() -> Dict[int, bytes]:
    """Every process's argv as /proc shows it to anyone (what `ps` prints)."""
    lines = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                lines[int(entry.name)] = (entry / "cmdline").read_bytes()
            except OSError:
                pass
    return lines


def wait_for(predicate: Callable, timeout: float, what: str, interval: float = 0.05):
    """Poll `predicate()` until truthy (returned); a bound against hanging, not a speed check."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
