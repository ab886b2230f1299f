"""Answering a logs request: the whole log as a JSON string, or (follow=true) a live text/plain stream."""
from flask import Response, stream_with_context

from kaos_backend.api import respond, services
from kaos_backend.api.request_parsing import flag_arg


def log_response(workspace: str, job_id: str, kinds=None):
    jobs = services().jobs
    if flag_arg("follow"):
        lines = jobs.follow_log(workspace, job_id, kinds)
        return Response(stream_with_context(lines), mimetype="text/plain",
                        headers={"X-Accel-Buffering": "no", "Cache-Control": "no-cache"})
    return respond(jobs.log_text(workspace, job_id, kinds))
