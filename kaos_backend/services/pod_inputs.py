"""What a workload running elsewhere (a pod, with no shared filesystem) fetches: each artifact its spec names, as
a zip made as it streams (zipstream.py), its members relative to where the workload unpacks it.

    source            the source bundle's model/ (as extracted; local_staging.Staging finds it)  -> the code
    data              the data bundle's top directory, or a manifest's ingested files          -> /pfs/data/<name>
    hyperparameters   a training's one combination, `<hash5>/<k=v_...>.json` (none: an empty zip) -> /pfs/hyper
    model             the served training's out/<hex6>/model files (none delivered: an empty zip) -> beside the code;
                      a notebook's: the whole out/<hex6> (model/, metrics/)                   -> /pfs/out/<hex6>
    data-<i>          a notebook's i-th attached data bundle's top directory                 -> /pfs/data/<name>

Which of these a workload may fetch is read from its own spec (pod_commands.names_of), never from the request."""
import json
from typing import List

from kaos_backend.errors import NotFound
from kaos_backend.executors.base import ArtifactMissing, WorkloadSpec
from kaos_backend.executors.local_staging import Staging
from kaos_backend.executors.pod_commands import DATA, HYPERPARAMETERS, SOURCE, attached_of, names_of
from kaos_backend.untrusted import is_real_dir
from kaos_backend.zipstream import StreamedZip, ZipEntry, tree_entries

_TOP = "top"  # tree_entries names members `<prefix>/...`: this prefix is taken off again


class PodInputs:
    """The artifacts of the backend whose data directory is `data_dir`, as zips for the workloads to fetch."""

    def __init__(self, data_dir, max_bundle_bytes: int = None):
        self.files = Staging(data_dir, max_bundle_bytes)

    def zip_of(self, spec: WorkloadSpec, name: str) -> StreamedZip:
        """The artifact `name` of `spec` as a zip to stream. Everything that can fail is checked before the first
        byte: NotFound for a name the spec does not have or an artifact the platform no longer stores;
        InvalidBundle / PayloadTooLarge for a stored bundle today's checks refuse."""
        if name not in names_of(spec):
            raise NotFound(f"Workload {spec.job_id} has no artifact {name!r} (it has: {', '.join(names_of(spec))})")
        try:
            if name == SOURCE:
                return StreamedZip(_relative(tree_entries(self.files.model_dir(spec.source), _TOP)))
            if name == DATA:
                return StreamedZip(_relative(tree_entries(self.files.data_root(spec.data), _TOP)))
            if attached_of(spec, name) is not None:
                return StreamedZip(_relative(tree_entries(self.files.data_root(attached_of(spec, name)), _TOP)))
        except ArtifactMissing as missing:
            raise NotFound(f"The {name} of workload {spec.job_id} is no longer stored: {missing}") from None
        if name == HYPERPARAMETERS:
            return StreamedZip(_hyperparameters_entries(spec))
        output = self.files.output_dir(spec.model)
        model = output if spec.kind == "notebook" else output / "model"  # a notebook reads metrics/ too
        return StreamedZip(_relative(tree_entries(model, _TOP)) if is_real_dir(model) else [])


def _relative(entries: List[ZipEntry]) -> List[ZipEntry]:
    return [entry._replace(name=entry.name[len(_TOP) + 1:]) for entry in entries]


def _hyperparameters_entries(spec: WorkloadSpec) -> List[ZipEntry]:
    if spec.hyperparameters is None:
        return []
    name = spec.hyperparameters.file
    if name.startswith("/") or ".." in name.split("/") or "\\" in name:
        raise ValueError(f"a hyperparameters file outside its directory: {name!r}")  # never made by kaos
    return [ZipEntry(name, data=json.dumps(spec.hyperparameters.values).encode("utf-8"))]
