from flask import Blueprint

from kaos_backend.api import respond, services

bp = Blueprint("jobs", __name__)


@bp.get("/job/<workspace>/<job_id>")
def job_state(workspace, job_id):
    return respond({"response": services().jobs.state(workspace, job_id)})
