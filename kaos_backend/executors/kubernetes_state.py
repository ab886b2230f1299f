"""One workload of the kubernetes executor as the executor keeps it: its state (what `get_state` returns: the
namespace, the Job's or Deployment's name and uid, the start's label, the paths of its files) and the files beside
its log, `<log's directory>/<workload>.*`:

    .exit       the exit record (outcome.py, with an `error` in words where the exit code does not say it all)
    .stop       written by `stop` (JSON: the grace period): the end was requested
    .follow     where the copy of the pod's log got to (kubernetes_logs.Cursor per container), the last line of
                each container, when a waiting problem was first seen and what it is now, how often a
                Deployment's pod was replaced and how the last one ended (kubernetes_follower.py)
    .lock       held by the thread that follows the workload (kubernetes_follower.Follower): "it is followed" is
                "it is held", across threads and processes

and the deletes of its objects that the executor and its follower both make."""
import json
from pathlib import Path
from typing import Optional

from kaos_backend.executors import outcome
from kaos_backend.executors.kubernetes_client import is_status
from kaos_backend.file_locks import lock_held

SUFFIXES = {"exit_path": ".exit", "stop_path": ".stop", "follow_path": ".follow", "lock_path": ".lock"}
WHAT = {"train": "training", "serve": "endpoint", "notebook": "notebook"}
START_LABEL = "kaos.io/start"   # on the pod template: which start of a workload a pod belongs to


def begin(kind: str, workload: str, log_name: str, home: Path, **fields) -> dict:
    """The state of a new workload named `workload` whose log (named `log_name`) is in the directory `home`; the
    files an earlier start of that name left are cleared."""
    state = {"kind": kind, "workload": workload, "log": log_name, **fields}
    state.update({key: str(home / f"{workload}{suffix}") for key, suffix in SUFFIXES.items()})
    for key in ("exit_path", "stop_path", "follow_path"):
        Path(state[key]).unlink(missing_ok=True)
    return state


def read_record(state: dict) -> Optional[dict]:
    return outcome.read_record(state["exit_path"])


def read_progress(state: dict) -> dict:
    """The follower's progress file (.follow) as it last saved it; {} before it saved one, or unreadable."""
    try:
        progress = json.loads(Path(state["follow_path"]).read_text())
    except (OSError, ValueError):
        return {}
    return progress if isinstance(progress, dict) else {}


def requested(state: dict) -> Optional[dict]:
    """The stop request (its grace period), or None."""
    try:
        return json.loads(Path(state["stop_path"]).read_text() or "{}")
    except (OSError, ValueError):
        return None


def request_stop(state: dict, grace: int) -> None:
    Path(state["stop_path"]).write_text(json.dumps({"grace": grace}))


def followed(state: dict) -> bool:
    """A follower holds the workload's lock (in this process or another)."""
    return lock_held(state["lock_path"])


def delete_owner(cluster, state: dict) -> None:
    """Delete the workload's Job or Deployment (its pods, Service and Secret go with it: Background
    propagation); gone already is not an error."""
    import kubernetes.client
    options = kubernetes.client.V1DeleteOptions(propagation_policy="Background",
                                                preconditions=kubernetes.client.V1Preconditions(uid=state["uid"]))
    try:
        if state["object"] == "Job":
            cluster.batch.delete_namespaced_job(state["name"], cluster.namespace, body=options,
                                                _preload_content=False)
        else:
            cluster.apps.delete_namespaced_deployment(state["name"], cluster.namespace, body=options,
                                                      _preload_content=False)
    except Exception as error:  # noqa: BLE001
        if not is_status(error, 404, 409):  # gone; or another start's of the same name (the uid precondition)
            raise


def delete_pod(cluster, name: str, grace: Optional[int]) -> None:
    """Delete a pod, its processes given `grace` seconds after SIGTERM (None: its own period); gone is fine."""
    try:
        cluster.core.delete_namespaced_pod(name, cluster.namespace, grace_period_seconds=grace,
                                           _preload_content=False)
    except Exception as error:  # noqa: BLE001
        if not is_status(error, 404):
            raise
