from flask import Blueprint

from kaos_backend.api import respond, services
from kaos_backend.api.listing import list_response
from kaos_backend.api.request_parsing import user_arg

bp = Blueprint("workspace", __name__)


@bp.get("/workspace")
def list_workspaces():
    return list_response("workspace", {"names": services().workspaces.names_page}, lambda lists: lists)


@bp.post("/workspace/<workspace>")
def create_workspace(workspace):
    info = services().workspaces.create(workspace, user_arg())
    return respond({"response": info.to_dict()}, 201)


@bp.get("/workspace/<workspace>")
def workspace_info(workspace):
    return respond({"response": services().workspaces.info(workspace).to_dict()})


@bp.delete("/workspace/<workspace>")
def delete_workspace(workspace):
    services().workspaces.delete(workspace)
    return respond(None)
