"""Failures as the Kubernetes API reports them: a `Status` object with the HTTP code, a machine reason
(NotFound, AlreadyExists, Conflict, Invalid, BadRequest, Expired, MethodNotAllowed, UnsupportedMediaType) and the
message the real API server writes, which the official client raises as `ApiException(status=code)`."""
from typing import Optional


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: Optional[dict] = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details or {}

    def status(self) -> dict:
        """The error as a `v1.Status` object (the body of the answer, or a watch's ERROR event's object)."""
        body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "code": self.code}
        if self.details:
            body["details"] = self.details
        return body


def not_found(what: str, name: str) -> ApiError:
    """`what` as the server names a resource: "pods", "jobs.batch"."""
    return ApiError(404, "NotFound", f'{what} "{name}" not found', {"name": name, "kind": what.split(".")[0]})


def already_exists(what: str, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{what} "{name}" already exists', {"name": name, "kind": what.split(".")[0]})


def conflict(what: str, name: str) -> ApiError:
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {what} "{name}": the object has been '
                    "modified; please apply your changes to the latest version and try again",
                    {"name": name, "kind": what.split(".")[0]})


def invalid(kind: str, name: str, message: str) -> ApiError:
    return ApiError(422, "Invalid", f'{kind} "{name}" is invalid: {message}', {"name": name, "kind": kind})


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def expired(requested: int, oldest: int) -> ApiError:
    """A watch from a resourceVersion the server no longer has the history of (410 Gone)."""
    return ApiError(410, "Expired", f"too old resource version: {requested} ({oldest})")
