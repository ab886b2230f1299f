from flask import Blueprint, request

from kaos_backend.api import respond, services
from kaos_backend.api.request_parsing import inputs_follow_arg, resource_args, upload_body, user_arg

bp = Blueprint("data", __name__)


@bp.post("/data/<workspace>/features")
def put_features(workspace):
    return respond(services().train.submit_features(workspace, upload_body(), user_arg(), inputs_follow_arg(),
                                                    **resource_args()))


@bp.post("/data/<workspace>/manifest")
def put_manifest(workspace):
    return respond(services().train.submit_manifest(workspace, upload_body(), user_arg(), inputs_follow_arg(),
                                                    **resource_args()))


@bp.post("/data/<workspace>/params")
def put_params(workspace):
    parallelism = request.args.get("parallelism")
    return respond(services().train.submit_params(workspace, upload_body(), user_arg(), parallelism,
                                                  inputs_follow_arg(), **resource_args()))


@bp.post("/data/<workspace>/notebook")
def put_notebook_data(workspace):
    services().uploads.notebook_data(workspace, upload_body(), user_arg())
    return respond(None)
