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


def blueprints():
    from kaos_backend.api import (blobs, data, health, inference, internal, jobs, notebook, openapi, train,
                                  workspace)
    return [health.bp, openapi.bp, workspace.bp, data.bp, blobs.bp, internal.bp, train.bp, jobs.bp, inference.bp,
            notebook.bp]
