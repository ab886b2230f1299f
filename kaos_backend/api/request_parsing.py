"""Reading upload bodies and common query parameters from a Flask request."""
import io
from typing import Optional

from flask import request

from kaos_backend.errors import BadRequest
from kaos_backend.services.paging import PageRequest, page_request
from kaos_backend.services.uploads import UploadBody


def upload_body() -> UploadBody:
    """Multipart part `data` (the original CLI), else `?digest=` with no body, else the raw body, streamed."""
    digest = request.args.get("digest") or None
    if request.mimetype == "multipart/form-data":
        part = request.files.get("data")
        if part is not None:
            return UploadBody(stream=part.stream, digest=digest)
        if "data" in request.form:
            return UploadBody(stream=io.BytesIO(request.form["data"].encode("utf-8")), digest=digest)
        raise BadRequest("A multipart upload needs a part named 'data'")
    if digest and not request.content_length and not _is_chunked():
        return UploadBody(digest=digest)
    return UploadBody(stream=request.stream, digest=digest)


def resource_args() -> dict:
    return {"cpu": request.args.get("cpu"), "memory": request.args.get("memory"), "gpu": request.args.get("gpu")}


def user_arg() -> str:
    return request.args.get("user")


def _is_chunked() -> bool:
    return "chunked" in request.headers.get("Transfer-Encoding", "").lower()


def flag_arg(name: str, default: bool = False) -> bool:
    """A boolean query parameter: true/True/1/yes (the original sent the literal strings True/False)."""
    value = request.args.get(name)
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off", "none"):
        return False
    raise BadRequest(f"Query parameter {name} must be true or false, not {value!r}")


def page_arg() -> Optional[PageRequest]:
    """The page that `?limit=&continue=` ask for (a list route), or None for the whole list (neither given, or
    both empty). 400 BAD_REQUEST for a limit that is not a whole number from 1 to 1000."""
    for name in ("limit", "continue"):
        if len(request.args.getlist(name)) > 1:
            raise BadRequest(f"Query parameter {name} is given more than once")
    return page_request(request.args.get("limit"), request.args.get("continue"))


def inputs_follow_arg() -> bool:
    """`inputs_follow=true` on a train input's upload: more inputs of the same deploy follow (kaos's own CLI says it
    on every upload of `kaos train deploy` but its last), so no training is scheduled until they arrive
    (services/train.py). 400 for a value that is not a boolean."""
    return flag_arg("inputs_follow")
