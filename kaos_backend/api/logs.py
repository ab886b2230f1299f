"""Answering a logs request: the whole log as a JSON string, or (follow=true) a live text/plain stream.

Behind the front door (kaos_backend.api_server sets `log_handoff.APP_FLAG`) a follow holds no worker thread:
once the request is authorized the answer is an empty 200 whose `X-Kaos-Follow` header hands the stream to the
front (kaos_backend.log_handoff). Anywhere else (an app served by another WSGI server) the view streams itself.
"""
from flask import Response, current_app, request, stream_with_context

from kaos_backend import log_handoff
from kaos_backend.api import respond, services
from kaos_backend.api.request_parsing import flag_arg

STREAM_HEADERS = {"X-Accel-Buffering": "no", "Cache-Control": "no-cache"}


def log_response(workspace: str, job_id: str, kinds=None):
    jobs = services().jobs
    if flag_arg("follow"):
        if _hands_off():
            return _handoff(log_handoff.Handoff(jobs.log_to_follow(workspace, job_id, kinds), job=job_id))
        return _stream(jobs.follow_log(workspace, job_id, kinds))
    return respond(jobs.log_text(workspace, job_id, kinds))


def endpoint_log_response(workspace, endpoint: str):
    return running_log_response(services().inference, workspace, endpoint)


def notebook_log_response(workspace, notebook: str):
    return running_log_response(services().notebooks, workspace, notebook)


def running_log_response(service, workspace, name: str):
    """The log of a workload that runs until it is killed (an endpoint, a notebook): `service` answers
    `log_to_follow`, `follow_log` and `log_text` for it; a follow ends when the workload has ended."""
    if flag_arg("follow"):
        if _hands_off():
            return _handoff(log_handoff.Handoff(service.log_to_follow(workspace, name), endpoint=name))
        return _stream(service.follow_log(workspace, name))
    return respond(service.log_text(workspace, name))


def _hands_off() -> bool:
    return bool(current_app.extensions.get(log_handoff.APP_FLAG)) and request.method == "GET"


def _handoff(handoff: log_handoff.Handoff) -> Response:
    headers = dict(STREAM_HEADERS, **{log_handoff.HEADER: log_handoff.encode(handoff)})
    return Response(b"", mimetype="text/plain", headers=headers)


def _stream(lines) -> Response:
    return Response(stream_with_context(lines), mimetype="text/plain", headers=STREAM_HEADERS)
