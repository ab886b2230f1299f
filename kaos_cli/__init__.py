"""The kaos command line interface and its Python SDK: `from kaos_cli import KaosClient` (docs/sdk.md).

The SDK's methods answer with the dataclasses of `kaos_model.wire` (`TrainJobListing`, `JobInfoPage`, `ServeInfo`,
...), the one definition of the REST API's objects that the backend answers with; they are re-exported here.
Errors are `kaos_cli.errors.KaosError` subclasses. Imported on first use, so `kaos --help` stays quick."""
from typing import Any

_SDK = {
    "KaosClient": "kaos_cli.client",
    "BlobNotStored": "kaos_cli.client",
    "NamesPage": "kaos_cli.client",
    "WaitTimeout": "kaos_cli.client_waits",
    "wait_until": "kaos_cli.client_waits",
    "KaosError": "kaos_cli.errors",
    "ConnectionProblem": "kaos_cli.errors",
    "RequestError": "kaos_cli.errors",
    "UnauthorizedError": "kaos_cli.errors",
    "PlatformUnhealthy": "kaos_cli.errors",
    "UnexpectedAnswer": "kaos_cli.errors",
}
_WIRE = ("BundleUpload", "DataDescriptor", "EndpointListing", "HealthInfo", "JobInfo", "JobInfoPage", "JobRecord",
         "ModelInfo", "ParamsUpload", "PartitionInfo", "ServeInfo", "SubmissionInfo", "TrainJobListing",
         "TrainPipelineInfo", "WorkspaceCreated", "WorkspaceInfo", "WorkspaceNames")
__all__ = sorted([*_SDK, *_WIRE])


def __getattr__(name: str) -> Any:
    import importlib

    if name in _SDK:
        return getattr(importlib.import_module(_SDK[name]), name)
    if name in _WIRE:
        return getattr(importlib.import_module("kaos_model.wire"), name)
    raise AttributeError(f"module 'kaos_cli' has no attribute {name!r}")
