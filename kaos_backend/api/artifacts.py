"""The internal artifact routes, for workloads that run where the backend's files are not (Kubernetes pods):

    GET /internal/artifacts/<workload>/<artifact>   the artifact as a zip, streamed (services/pod_inputs.py)
    PUT /internal/artifacts/<workload>/output       a training's output as a zip (services/pod_output.py):
                                                    201 when stored, 200 when identical to what is stored

Not under /api/ and not in the API's description: they answer a workload, not a user, and take no X-Token but
the workload's own artifact token (`Authorization: Bearer <token>`, services/artifact_tokens.py): 401 without a
live token, 403 with another workload's, 404 for an artifact its spec does not name. Errors are the API's JSON
`{"error_code", "message"}`.

Who reaches them: the front door relays every path that is not a workload's to the API as it came, these too, so
on a LOCAL or docker platform they answer on the public port; without a token of a live workload they give
nothing away. On Kubernetes the pods reach them through the backend's Service (in-cluster), the Ingress routes only
/api/ and the gateway paths, and a NetworkPolicy keeps other pods off the backend (infrastructure/kubernetes)."""
from flask import Blueprint, Response, request

from kaos_backend.api import respond, services

bp = Blueprint("artifacts", __name__)
OUTPUT = "output"


def _grant(workload: str):
    scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
    return services().artifact_tokens.check(token.strip() if scheme.lower() == "bearer" else None, workload)


@bp.get("/internal/artifacts/<workload>/<artifact>")
def fetch(workload, artifact):
    spec = _grant(workload).spec
    archive = services().pod_inputs.zip_of(spec, artifact)
    return Response(archive.chunks(), mimetype="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="{artifact}.zip"'})


@bp.put(f"/internal/artifacts/<workload>/{OUTPUT}")
def hand_back(workload):
    spec = _grant(workload).spec
    answer = services().pod_output.receive(spec, request.stream)
    return respond(answer, 201 if answer["created"] else 200)
