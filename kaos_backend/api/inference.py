from functools import partial

from flask import Blueprint, Response, request

from kaos_backend.api import kill_answer, respond, services
from kaos_backend.api.listing import list_response
from kaos_backend.api.logs import endpoint_log_response, log_response
from kaos_backend.api.request_parsing import resource_args, upload_body, user_arg

bp = Blueprint("inference", __name__)


@bp.post("/inference/<workspace>/<other_than(logs):model_id>")
def deploy(workspace, model_id):
    return respond(services().inference.deploy(workspace, model_id, upload_body(), user_arg(), **resource_args()))


@bp.get("/inference/<workspace>")
def list_endpoints(workspace):
    """`limit` applies to the endpoints and to the builds, each list on its own."""
    return list_response(f"inference/{workspace}",
                         {"endpoints": partial(services().inference.page, workspace, request.host),
                          "building": partial(services().jobs.page, workspace, "build-serve")},
                         lambda lists: {"response": lists})


@bp.get("/inference/<workspace>/<endpoint>/logs")
@bp.get("/inference/<endpoint>/logs", defaults={"workspace": None})
def logs(endpoint, workspace):
    return endpoint_log_response(workspace, endpoint)


@bp.get("/inference/<workspace>/build/<job_id>/logs")
def build_logs(workspace, job_id):
    return log_response(workspace, job_id, ("build-serve",))


@bp.get("/inference/<workspace>/<endpoint>/bundle")
def bundle(workspace, endpoint):
    return Response(services().inference.bundle(workspace, endpoint).chunks(), mimetype="application/zip")


@bp.get("/inference/<workspace>/<endpoint>/provenance")
def provenance(workspace, endpoint):
    return respond(services().inference.provenance(workspace, endpoint, request.host))


@bp.delete("/inference/<workspace>/<other_than(logs):endpoint>")
@bp.delete("/inference/<endpoint>", defaults={"workspace": None})
def kill(endpoint, workspace):
    pending = services().inference.kill(workspace, endpoint)
    return kill_answer(pending)
