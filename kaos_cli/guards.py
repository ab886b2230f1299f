"""Checks that run before a command (reference §3.3, fixed per §11.14), and the active client."""
import functools
import os
from typing import Callable, Optional, Tuple

from kaos_cli.errors import KaosError
from kaos_cli.state import Config, state_dir


def require_init() -> Config:
    """`.kaos/` and its config must exist."""
    if not state_dir().is_dir():
        raise KaosError(".kaos directory does not exist - first run kaos init", level="Warning")
    config = Config.load()
    if not config.exists:
        raise KaosError("./.kaos/config does not exist - run kaos init", level="Warning")
    return config


def require_context(config: Config) -> Tuple[str, dict]:
    """The active context's name and fields; it must be one of the known contexts (any of them)."""
    active = config.active
    if not active:
        raise KaosError("active context not defined - first run kaos build set", level="Warning")
    fields = config.context(active)
    if active not in config.contexts or fields is None:
        raise KaosError(f"Active context/build {active} has been destroyed. "
                        "Check available contexts with - kaos build list", level="Warning")
    return active, fields


def make_client(config: Config):
    """A `KaosClient` for the active context (health problems surface from its first request)."""
    from kaos_cli.client import KaosClient

    name, fields = require_context(config)
    from kaos_cli.output import progress_wanted

    return KaosClient(fields.get("url"), fields.get("token"), config.user, progress=progress_wanted(),
                      unhealthy_advice=unhealthy_advice(name, fields), credentials=context_credentials(config, name))


def context_credentials(config: Config, name: str) -> Callable[[], Optional[Tuple[str, str]]]:
    """A reader of the (url, token) that `config`'s file gives the context `name` when it is called (None when it
    gives none, or cannot be read): a client's `credentials` (transport.Transport), which a `kaos build deploy -f`
    of that context renews while a command runs."""
    path = config.path

    def read() -> Optional[Tuple[str, str]]:
        try:
            fields = Config(path).context(name)
        except KaosError:
            return None
        return (fields.get("url"), fields.get("token")) if fields else None
    return read


def unhealthy_advice(name: str, fields: dict) -> str:
    """What to do when the context's backend says a part of it is down: its log and the rebuild command (LOCAL,
    KUBERNETES), or the backend's log (a backend this CLI did not start)."""
    if (fields or {}).get("kind") == "kubernetes":
        return (f"see kubectl --context {fields.get('kube_context')} -n {fields.get('namespace')} logs "
                f"deploy/kaos-backend, or run kaos build deploy -c {name} -f")
    if (fields or {}).get("kind") != "local":
        return "see the kaos backend's log"
    from kaos_cli.local_platform import display_path

    log = display_path(fields.get("log") or os.path.join(".kaos", "LOCAL", "backend.log"))
    return f"see {log}, or run kaos build deploy -c {name} -f"


def require_workspace(config: Config, client) -> str:
    """The current workspace, which the backend must still know."""
    workspace = config.workspace
    if not workspace:
        raise KaosError("workspace not defined - first run kaos workspace set", level="Warning")
    if workspace not in client.list_workspaces():
        raise KaosError(f"Workspace {workspace} has been deleted/killed. Please ensure the kaos train/serve "
                        "commands are run on an active workspace. Check available workspaces with - "
                        "kaos workspace list", level="Warning")
    return workspace


def workspace_session():
    """The client and the current workspace of a train/serve command (init, context and workspace checks)."""
    config = require_init()
    require_context(config)
    client = make_client(config)
    return client, require_workspace(config, client)


def warn_when_unhealthy(client) -> None:
    """Before a deploy's first upload, one `GET /api/health`: when the backend says a part of it is down (its
    scheduler, typically), one Warning line names it and says the job starts once it is back; the deploy goes
    on. Other answers of the health route (a backend without it) are not this check's business."""
    from kaos_cli import render
    from kaos_cli.errors import PlatformUnhealthy, RequestError

    try:
        client.health()
    except PlatformUnhealthy as problem:
        render.warning(f"{problem.message} - the deploy goes on, and the job will start once the "
                       f"{problem.part or 'backend'} is back")
    except RequestError:
        pass


def _guard(check: Callable[[], None]):
    def decorator(command):
        @functools.wraps(command)
        def wrapper(*args, **kwargs):
            check()
            return command(*args, **kwargs)
        return wrapper
    return decorator


def _check_context() -> None:
    require_context(require_init())


def _check_workspace() -> None:
    config = require_init()
    require_workspace(config, make_client(config))


init_check = _guard(lambda: require_init() and None)
context_check = _guard(_check_context)
workspace_check = _guard(_check_workspace)
