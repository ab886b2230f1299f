import pytest

from kaos_backend import errors

CONTRACT = {
    "BadRequest": ("BAD_REQUEST", 400), "InvalidBundle": ("INVALID_BUNDLE", 400),
    "InvalidWorkspaceName": ("INVALID_WORKSPACE_NAME", 400), "InvalidManifest": ("INVALID_MANIFEST", 400),
    "InvalidHyperparams": ("INVALID_HYPERPARAMS", 400), "CpuRequestError": ("CPU_REQUEST_ERROR", 400),
    "MemoryRequestError": ("MEMORY_REQUEST_ERROR", 400), "GpuRequestError": ("GPU_REQUEST_ERROR", 400),
    "JobNotRunning": ("JOB_NOT_RUNNING", 400), "AuthorizationError": ("AUTHORIZATION_FAILURE", 401),
    "NotFound": ("NOT_FOUND", 404), "WorkspaceNotFound": ("WORKSPACE_NOT_FOUND", 404),
    "BlobNotFound": ("BLOB_NOT_FOUND", 404), "JobNotFound": ("JOB_NOT_FOUND", 404),
    "ModelNotFound": ("MODEL_NOT_FOUND", 404), "PipelineNotFound": ("PIPELINE_NOT_FOUND", 404),
    "MetricNotFound": ("METRIC_NOT_FOUND", 404), "CommitNotFound": ("COMMIT_NOT_FOUND", 404),
    "MethodNotAllowed": ("BAD_REQUEST", 405), "WorkspaceExists": ("WORKSPACE_EXISTS", 409),
    "NotebookExists": ("NOTEBOOK_EXISTS", 409), "PayloadTooLarge": ("PAYLOAD_TOO_LARGE", 413),
    "InternalError": ("INTERNAL_ERROR", 500), "ArtifactForbidden": ("FORBIDDEN", 403),
    "OutputExists": ("OUTPUT_EXISTS", 409),
}


@pytest.mark.parametrize("name, expected", CONTRACT.items())
def test_codes_and_statuses(name, expected):
    error = getattr(errors, name)("some message")
    assert isinstance(error, errors.KaosApiError)
    assert (error.code, error.status) == expected
    assert error.to_dict() == {"error_code": expected[0], "message": "some message"}


def test_named_messages():
    assert errors.WorkspaceNotFound.named("ws").message == "Workspace ws not found"
    assert errors.WorkspaceExists.named("ws").message == "Workspace ws already exists"
    assert errors.BlobNotFound.named("ab").message == "Blob ab not found"
