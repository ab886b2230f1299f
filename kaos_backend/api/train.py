from functools import partial

from flask import Blueprint, Response, request

from kaos_backend.api import kill_answer, respond, services
from kaos_backend.api.listing import list_response
from kaos_backend.api.logs import log_response
from kaos_backend.api.request_parsing import flag_arg, inputs_follow_arg, resource_args, upload_body, user_arg

bp = Blueprint("train", __name__)
TRAIN_KINDS = ("train", "build-train", "ingestion")  # what `kaos train logs` and `kaos train kill` accept
LIST_KINDS = {"training": "train", "building": "build-train", "ingesting": "ingestion"}  # GET /train/<ws>


@bp.post("/train/<workspace>")
def submit_source(workspace):
    return respond(services().train.submit_source(workspace, upload_body(), user_arg(), inputs_follow_arg(),
                                                  **resource_args()))


@bp.get("/train/<workspace>")
def list_jobs(workspace):
    """`limit` applies to each of the three lists: builds and ingestions pile up too (one per new source or
    manifest), and every table of `kaos train list` is numbered on its own."""
    jobs = services().jobs
    return list_response(f"train/{workspace}", {name: partial(jobs.page, workspace, kind)
                                                for name, kind in LIST_KINDS.items()},
                         lambda lists: {"response": lists})


@bp.get("/train/<workspace>/inspect")
def inspect(workspace):
    return respond(services().train.inspect(workspace))


@bp.get("/train/<workspace>/<other_than(inspect):job_id>")
def info(workspace, job_id):
    return respond(services().train.info(workspace, job_id, request.args.get("sort_by") or None,
                                         request.args.get("page_id"), flag_arg("ascending")))


@bp.get("/train/<workspace>/<job_id>/bundle")
def bundle(workspace, job_id):
    """`kaos train get`: a zip streamed as it is made; every error (unknown job or model, a running job) is
    raised before the first byte. The flags take true/false or the original's literal True/False."""
    train_bundle = services().train.bundle(
        workspace, job_id, include_code=flag_arg("include_code", True), include_data=flag_arg("include_data"),
        include_model=flag_arg("include_model", True), model_id=request.args.get("model_id") or None)
    return Response(train_bundle.chunks(), mimetype="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="train-{job_id}.zip"'})


@bp.get("/train/<workspace>/<model_id>/provenance")
def provenance(workspace, model_id):
    """`kaos train provenance`: the DOT graph of a model. The converter takes any text but `/`, so model ids
    (`<branch>:<hex6>`, the `:` plain or as %3A) reach this view whole."""
    return respond(services().train.provenance(workspace, model_id))


@bp.get("/train/<workspace>/<job_id>/logs")
def logs(workspace, job_id):
    return log_response(workspace, job_id, TRAIN_KINDS)


@bp.get("/train/<workspace>/build/<job_id>/logs")
def build_logs(workspace, job_id):
    return log_response(workspace, job_id, ("build-train",))


@bp.delete("/train/<workspace>/<other_than(inspect):job_id>")
def kill(workspace, job_id):
    pending = services().jobs.kill(workspace, job_id, TRAIN_KINDS)
    return kill_answer(pending)
