"""How a notebook workload runs JupyterLab, whatever the executor: one command line (pure functions, no I/O).

    jupyter lab --no-browser --ServerApp.base_url=/notebook-<ws>-<user>/ --ServerApp.root_dir=<work> ...

- The token is not on the command line (every user of the machine can read a process's arguments): the
  workload's environment carries it as JUPYTER_TOKEN (jupyter_server's IdentityProvider reads it), so Jupyter
  refuses a request without it (its login page; 403 for the API).
- `base_url` is the notebook's name: the gateway routes `/notebook-<ws>-<user>/...` to it with the path kept.
- Jupyter listens where the executor says (`ip`, `port`: loopback on the local executor, 0.0.0.0:8888 in a
  container) and never on another port (`port_retries=0`: a taken port is a failed start, not a surprise);
  `allow_remote_access` because the gateway forwards the user's Host header (Jupyter would otherwise refuse any
  Host that is not a loopback name); `allow_root` since a container (or a sandbox-less local backend) runs as
  root; `allow_password_change=False`: the token stays the only way in (its login page offers no password).
- Idle culling is Jupyter's own: kernels idle for `idle_timeout` seconds are shut down, and the server stops
  itself (exit code 0) once it has had no kernel, terminal or request for that long (jupyter_server checks every
  minute). The platform records such an end as PIPELINE_STANDBY and keeps the work directory. 0: never.
"""
from typing import List, Optional

TOKEN_VARIABLE = "JUPYTER_TOKEN"
CONTAINER_PORT = 8888          # where a notebook listens inside its container (1.x's port)
CULL_INTERVAL_SECONDS = 60     # how often Jupyter looks for idle kernels


def jupyter_arguments(base_url: Optional[str], root_dir: str, idle_timeout: Optional[float]) -> List[str]:
    """The arguments after `jupyter lab` but where it listens (`listen_arguments`): `base_url`
    "/notebook-<ws>-<user>/", `root_dir` the work directory as the workload sees it, `idle_timeout` seconds (None
    or 0: never culled). ValueError for a base URL that is not an absolute path ending in a slash."""
    if not base_url or not base_url.startswith("/") or not base_url.endswith("/") or " " in base_url:
        raise ValueError(f"not a notebook's base URL: {base_url!r}")
    arguments = ["--no-browser", f"--ServerApp.base_url={base_url}", f"--ServerApp.root_dir={root_dir}",
                 "--ServerApp.port_retries=0", "--ServerApp.allow_remote_access=True", "--ServerApp.allow_root=True",
                 "--ServerApp.allow_password_change=False"]
    idle = int(idle_timeout or 0)
    if idle > 0:
        arguments += [f"--ServerApp.shutdown_no_activity_timeout={idle}",
                      f"--MappingKernelManager.cull_idle_timeout={idle}",
                      f"--MappingKernelManager.cull_interval={min(idle, CULL_INTERVAL_SECONDS)}",
                      f"--TerminalManager.cull_inactive_timeout={idle}"]
    return arguments


def listen_arguments(ip: str, port: int) -> List[str]:
    """Where Jupyter listens: `ip` (an address of the workload's, "0.0.0.0" in a container) and `port`."""
    return [f"--ServerApp.ip={ip}", f"--ServerApp.port={int(port)}"]


def readiness_path(base_url: str) -> str:
    """What the platform asks to know that the server is up: `<base_url>api`, which answers its version without
    a token."""
    return f"{base_url}api"
