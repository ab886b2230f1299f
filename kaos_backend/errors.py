"""The errors of the REST API (docs/rest-api.md): each one an `error_code` and an HTTP status."""
from typing import Dict

from kaos_model.wire import Error


class KaosApiError(Exception):
    """`raise WorkspaceNotFound("Workspace x not found")`, or `WorkspaceNotFound.named("x")` where offered."""
    code = "INTERNAL_ERROR"
    status = 500

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def to_dict(self) -> Dict[str, str]:
        return Error(self.code, self.message).to_dict()


class InternalError(KaosApiError):
    code, status = "INTERNAL_ERROR", 500


# 400
class BadRequest(KaosApiError):
    code, status = "BAD_REQUEST", 400


class InvalidBundle(KaosApiError):
    code, status = "INVALID_BUNDLE", 400


class InvalidWorkspaceName(KaosApiError):
    code, status = "INVALID_WORKSPACE_NAME", 400


class InvalidManifest(KaosApiError):
    code, status = "INVALID_MANIFEST", 400


class InvalidHyperparams(KaosApiError):
    code, status = "INVALID_HYPERPARAMS", 400


class CpuRequestError(KaosApiError):
    code, status = "CPU_REQUEST_ERROR", 400


class MemoryRequestError(KaosApiError):
    code, status = "MEMORY_REQUEST_ERROR", 400


class GpuRequestError(KaosApiError):
    code, status = "GPU_REQUEST_ERROR", 400


class JobNotRunning(KaosApiError):
    code, status = "JOB_NOT_RUNNING", 400


class PageError(KaosApiError):
    code, status = "PAGE_ERROR", 400


# 401
class AuthorizationError(KaosApiError):
    code, status = "AUTHORIZATION_FAILURE", 401


# 403
class ArtifactForbidden(KaosApiError):
    """A valid artifact token of another workload (api/artifacts.py): the internal routes' only 403."""
    code, status = "FORBIDDEN", 403


# 404
class NotFound(KaosApiError):
    code, status = "NOT_FOUND", 404


class WorkspaceNotFound(KaosApiError):
    code, status = "WORKSPACE_NOT_FOUND", 404

    @classmethod
    def named(cls, name: str) -> "WorkspaceNotFound":
        return cls(f"Workspace {name} not found")


class BlobNotFound(KaosApiError):
    code, status = "BLOB_NOT_FOUND", 404

    @classmethod
    def named(cls, digest: str) -> "BlobNotFound":
        return cls(f"Blob {digest} not found")


class JobNotFound(KaosApiError):
    code, status = "JOB_NOT_FOUND", 404


class ModelNotFound(KaosApiError):
    code, status = "MODEL_NOT_FOUND", 404


class PipelineNotFound(KaosApiError):
    code, status = "PIPELINE_NOT_FOUND", 404


class MetricNotFound(KaosApiError):
    code, status = "METRIC_NOT_FOUND", 404


class CommitNotFound(KaosApiError):
    code, status = "COMMIT_NOT_FOUND", 404


class AlienProvenance(KaosApiError):
    code, status = "ALIEN_PROVENANCE_ERROR", 404


# 405 (the contract answers a wrong method with BAD_REQUEST)
class MethodNotAllowed(KaosApiError):
    code, status = "BAD_REQUEST", 405


# 409
class WorkspaceExists(KaosApiError):
    code, status = "WORKSPACE_EXISTS", 409

    @classmethod
    def named(cls, name: str) -> "WorkspaceExists":
        return cls(f"Workspace {name} already exists")


class NotebookExists(KaosApiError):
    code, status = "NOTEBOOK_EXISTS", 409


class OutputExists(KaosApiError):
    """A training's output was handed back already, with other contents (api/artifacts.py)."""
    code, status = "OUTPUT_EXISTS", 409


# 413
class PayloadTooLarge(KaosApiError):
    code, status = "PAYLOAD_TOO_LARGE", 413


# 503
class PlatformUnhealthy(KaosApiError):
    """A part of the backend does not do its share (`part`: "scheduler", ...): the request cannot complete."""
    code, status = "PLATFORM_UNHEALTHY", 503

    def __init__(self, message: str, part: str = ""):
        super().__init__(message)
        self.part = part

    def to_dict(self) -> Dict[str, str]:
        return {**super().to_dict(), **({"part": self.part} if self.part else {})}
