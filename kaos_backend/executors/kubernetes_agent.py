"""How a workload's pod runs the pod agent (issue 11): the one place the spec builders reach it.

The agent (kaos_backend/executors/pod_agent.py, stdlib only, another part of issue 11) is passed inline,
`python3 -c <its source> fetch ...` / `... upload ...`, so any image with a python3 runs it. Its interface, as the
spec builders use it:

    fetch_command(spec, base_url) -> argv    run in the initContainer `fetch`, /pfs an emptyDir: fills
                                             /pfs/code (the source's model/ files), /pfs/data/<name> (a train
                                             spec's data), /pfs/hyper/<file> (its hyperparameters), and a serve
                                             spec's model files beside its code; one log line per artifact
    upload_command(spec, base_url) -> argv   run after ./train by the train container's wrapper: sends
                                             the output directory (KAOS_TRAIN_OUTPUT) to the backend, exits 0 once
                                             the backend acknowledged it

Both read the artifact token from the environment (KAOS_ARTIFACT_TOKEN) and reach the backend at `base_url`
(config `internal_url`). Until pod_agent.py lands, these stand-ins give argv of that shape whose program fails
at once with a clear line; when it lands, this module becomes an import of its two functions.
"""
from typing import List

from kaos_backend.executors.base import WorkloadSpec

PYTHON = "python3"
_MISSING_AGENT = ("import sys; sys.exit('kaos: the pod agent is not part of this kaos yet: "
                  "the pod cannot ' + sys.argv[1] + ' its artifacts')")


def fetch_command(spec: WorkloadSpec, base_url: str) -> List[str]:
    """The argv of the initContainer that fetches `spec`'s inputs from the backend at `base_url` into /pfs."""
    return [PYTHON, "-c", _MISSING_AGENT, "fetch", base_url, spec.job_id]


def upload_command(spec: WorkloadSpec, base_url: str) -> List[str]:
    """The argv that sends a training's output (KAOS_TRAIN_OUTPUT) to the backend at `base_url`."""
    return [PYTHON, "-c", _MISSING_AGENT, "upload", base_url, spec.job_id]
