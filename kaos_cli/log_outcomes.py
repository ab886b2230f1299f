"""What a log's command says beyond the log: why a log is empty (a job or workload that never ran) and how an
endpoint's followed log ended; `job_logs.show_logs`' `empty` and `job_state` hooks."""
from typing import Any, Callable, Optional

from kaos_cli.errors import KaosError


def job_never_ran(client) -> Callable[[str, str], Optional[str]]:
    """`show_logs`' `empty` for a job: why its log is empty, from its state and reason (`GET /job/<ws>/<id>`):
    "Job <id> never ran: <reason>" once it ended, "Job <id> has written no log yet (JOB_STARTING)" before."""
    def why(workspace: str, job_id: str) -> Optional[str]:
        try:
            record = client.job_state(workspace, job_id)
        except KaosError:
            return None
        if record.state in ("JOB_FAILURE", "JOB_KILLED"):
            return f"Job {job_id} never ran: {record.reason or record.state}"
        if record.state == "JOB_SUCCESS":
            return f"Job {job_id} wrote no log"
        return f"Job {job_id} has written no log yet ({record.state})"
    return why


def workload_never_ran(client, kind: str) -> Callable[[str, str], Optional[str]]:
    """`show_logs`' `empty` for an endpoint (`kind` "serve") or a notebook ("notebook"): why its log is empty,
    from its row of `kaos <kind> list`: "Endpoint <name> never ran: the serve image could not be built: see kaos
    serve build-logs -j <id>" (the reason `kaos serve list` shows) once it failed, else "... has written no log
    yet (<state>)"."""
    def why(workspace: str, name: str) -> Optional[str]:
        item = _listed(client, kind, workspace, name)
        if item is None:
            return None
        subject = f"{'Endpoint' if kind == 'serve' else 'Notebook'} {name}"
        if item.state == "PIPELINE_FAILURE":
            return f"{subject} never ran: {item.reason or item.state}"
        return f"{subject} has written no log yet ({item.state})"
    return why


def _listed(client, kind: str, workspace: str, name: str):
    """The row of the endpoint (`kind` "serve") or notebook ("notebook") `name` in its `kaos <kind> list`; None
    when it is not there or the list cannot be had."""
    try:
        listing = client.serve_list(workspace) if kind == "serve" else client.notebook_list(workspace)
    except KaosError:
        return None
    items = listing.endpoints if kind == "serve" else listing.notebooks
    return next((item for item in items if item.name == name), None)


def endpoint_outcome(client) -> Callable[[str, str], Any]:
    """`show_logs`' `job_state` for an endpoint's follow, which ends when the endpoint is killed (its row gone:
    the follow's normal end) or has given up (PIPELINE_FAILURE: raised, with the reason `kaos serve list` shows)."""
    from types import SimpleNamespace

    def outcome(workspace: str, name: str):
        item = _listed(client, "serve", workspace, name)  # none: the follow ended as it does (killed)
        if item is not None and item.state == "PIPELINE_FAILURE":
            raise KaosError(f"Endpoint {name} ended in state PIPELINE_FAILURE: {item.reason or 'no reason given'}")
        return SimpleNamespace(state="JOB_SUCCESS")
    return outcome
