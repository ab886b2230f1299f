from flask import Blueprint
from kaos_model.wire import WorkspaceCreated

from kaos_backend.api import respond, services
from kaos_backend.api.listing import list_response
from kaos_backend.api.request_parsing import user_arg

bp = Blueprint("workspace", __name__)


@bp.get("/workspace")
def list_workspaces():
    return list_response("workspace", {"names": services().workspaces.names_page}, lambda lists: lists)


@bp.post("/workspace/<workspace>")
def create_workspace(workspace):
    """201: 1.x's `{"build_train", "build_serve", "build_notebook"}` (the build pipelines, by name) and the
    workspace's info as `response`."""
    info = services().workspaces.create(workspace, user_arg())
    created = WorkspaceCreated(build_train=f"build-train-{info.name}", build_serve=f"build-serve-{info.name}",
                               build_notebook=f"build-notebook-{info.name}", extra={"response": info})
    return respond(created.to_dict(), 201)


@bp.get("/workspace/<workspace>")
def workspace_info(workspace):
    return respond({"response": services().workspaces.info(workspace).to_dict()})


@bp.delete("/workspace/<workspace>")
def delete_workspace(workspace):
    services().workspaces.delete(workspace)
    return respond(None)
