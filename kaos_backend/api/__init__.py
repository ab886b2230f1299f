"""HTTP views, one blueprint per area, all mounted under `/api`. A view parses, calls a service, returns."""
from flask import current_app, jsonify

from kaos_backend.services import Services


def services() -> Services:
    return current_app.extensions["kaos"]


def respond(payload, status: int = 200):
    """JSON for any payload, `null` included (Flask cannot return None)."""
    response = jsonify(payload)
    response.status_code = status
    return response


def kill_answer(pending):
    """200 `null` once the kill is done (`pending` None); else 202 with what `pending` (services/kill_wait.py)
    says, and, when its workload has no reason of its own, why the health says the backend is not healthy (the
    engine has not answered the scheduler's request, the scheduler is down)."""
    if pending is None:
        return respond(None)
    evaluate = current_app.extensions.get("kaos_parts") if not pending.reason else None
    verdict = evaluate() if evaluate is not None else None
    if verdict is not None and not verdict.healthy:
        pending = pending.because(verdict.message)
    return respond(pending.to_dict(), 202)


def blueprints():
    from kaos_backend.api import (blobs, data, health, inference, internal, jobs, notebook, openapi, train,
                                  workspace)
    return [health.bp, openapi.bp, workspace.bp, data.bp, blobs.bp, internal.bp, train.bp, jobs.bp, inference.bp,
            notebook.bp]
