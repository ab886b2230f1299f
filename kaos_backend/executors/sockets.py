"""Where a local endpoint may listen on a unix socket: a directory of its own in a short runtime directory.

A unix socket's path must fit sun_path (108 bytes with its NUL), and data directories (a test's tmp_path) can be
longer than that, so the socket does not live under the data directory: it lives in
`<root>/<digest>/serve.sock`, where `<root>` is `/run/kaos/endpoints` when the backend is root (mode 0711: the
workloads may traverse it, not list it), else `$XDG_RUNTIME_DIR/kaos-endpoints` or `<tmp>/kaos-endpoints-<uid>`
(mode 0700), and `<digest>` 16 hex digits of sha256(platform id, endpoint name, a random token of the start): two
kaos backends on one machine, or two starts of one endpoint (a restart, a start that lost a race and is being
stopped), never share a directory, and the path is about 50 bytes.

The endpoint's directory is made at each start, given to the workload's user (the runner chowns it as one
of its writable paths, and the sandbox binds it back into the workload's view, so the socket it makes there is
the one the front connects to), and removed when the endpoint ends. A directory of its own, not a shared sticky
one, so that no workload can make the socket another endpoint's clients would reach.
"""
import hashlib
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Optional

SOCKET_VARIABLE = "KAOS_SOCKET"
SOCKET_NAME = "serve.sock"
ROOT_RUNTIME = "/run/kaos/endpoints"
MAX_PATH = 107  # sun_path is 108 bytes, one of them the terminating NUL


def free_port(host: str) -> int:
    """A TCP port of `host` that nothing listens on now (the kernel's pick), for a workload to listen on."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def socket_root() -> Path:
    """The directory that holds every endpoint's socket directory (not made here)."""
    if os.geteuid() == 0:
        return Path(ROOT_RUNTIME)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime) and os.access(runtime, os.W_OK | os.X_OK):
        return Path(runtime) / "kaos-endpoints"
    return Path(tempfile.gettempdir()) / f"kaos-endpoints-{os.geteuid()}"


def socket_path(platform: str, name: str, start: str) -> Path:
    """Where the endpoint `name` of the backend `platform` (config.platform_id) may listen in its start `start`
    (a random token)."""
    digest = hashlib.sha256(f"{platform}\0{name}\0{start}".encode()).hexdigest()[:16]
    return socket_root() / digest / SOCKET_NAME


def prepare(path: Path) -> Optional[Path]:
    """Make the socket's directory afresh (whatever an earlier run left is removed); `path` when it can be used,
    None when its directory cannot be made or the path is too long for a unix socket (the endpoint is then
    reached over TCP alone)."""
    if len(os.fsencode(str(path))) > MAX_PATH:
        return None
    root, directory = path.parent.parent, path.parent
    try:
        root.mkdir(mode=0o711 if os.geteuid() == 0 else 0o700, parents=True, exist_ok=True)
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(mode=0o700)
    except OSError:
        return None
    return path


def remove(path: Optional[str]) -> None:
    """Remove the socket's directory (the socket with it); gone already is fine."""
    if path:
        shutil.rmtree(Path(path).parent, ignore_errors=True)
