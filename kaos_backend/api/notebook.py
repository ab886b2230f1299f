"""`/notebook/...` (reference §5.6): a workspace's notebooks, their builds' logs, their own logs, kill."""
from functools import partial

from flask import Blueprint, request

from kaos_backend.api import kill_answer, respond, services
from kaos_backend.api.listing import list_response
from kaos_backend.api.logs import log_response, notebook_log_response
from kaos_backend.api.request_parsing import resource_args, upload_body, user_arg

bp = Blueprint("notebook", __name__)


def _source_body():
    """The uploaded source bundle, or None for an empty body (1.x's "deploy the default notebook")."""
    if request.args.get("digest") or request.mimetype == "multipart/form-data":
        return upload_body()
    if request.content_length or "chunked" in request.headers.get("Transfer-Encoding", "").lower():
        return upload_body()
    return None


@bp.post("/notebook/<workspace>")
def deploy(workspace):
    return respond(services().notebooks.deploy(workspace, _source_body(), user_arg(), request.host,
                                               data=request.args.getlist("data"), model=request.args.get("model"),
                                               **resource_args()))


@bp.get("/notebook/<workspace>")
def list_notebooks(workspace):
    """`limit` applies to the notebooks and to the builds, each list on its own."""
    return list_response(f"notebook/{workspace}",
                         {"notebooks": partial(services().notebooks.page, workspace, request.host),
                          "building": partial(services().jobs.page, workspace, "build-notebook")},
                         lambda lists: {"response": lists})


@bp.get("/notebook/<workspace>/build/<job_id>/logs")
def build_logs(workspace, job_id):
    return log_response(workspace, job_id, ("build-notebook",))


@bp.get("/notebook/<workspace>/<name>/logs")
def logs(workspace, name):
    """`?follow=true`: its lines as they are written, until the notebook ends (killed, culled, given up)."""
    return notebook_log_response(workspace, name)


@bp.delete("/notebook/<workspace>/<name>")
@bp.delete("/notebook/<name>", defaults={"workspace": None})
def kill(name, workspace):
    pending = services().notebooks.kill(workspace, name)
    return kill_answer(pending)
