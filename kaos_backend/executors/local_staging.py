"""How the local executor stages a workload's artifacts (`executors/base.py`: a spec names them, never a path):
as directories of this machine, under the data directory, and what it runs there. Every workload gets a
directory of its own beside its log (`<log's directory>/work/<workload>`), its current directory.

    source (a bundle)          its model/ as extracted (<data>/extracted/<digest>/<root>/model) copied to the work
                               directory: building a local package writes into it; `train`/`serve` made executable
    data (a bundle)            read in place, as extracted: KAOS_TRAIN_DATA
    data (ingested files)      read in place: <data>/ingested/<digest>/manifest (ArtifactMissing when not there)
    data (a manifest's bytes)  copied to work/data.mf, for the ingestion to read
    hyperparameters            one JSON file <log's directory>/hyper/<workload>/<file>: KAOS_TRAIN_HYPER
    output (a training's)      <data>/jobs/<job>/out/<hex6>, made empty: `./train <it>`, KAOS_TRAIN_OUTPUT
    output (ingested files)    <data>/ingested/<digest>/: the ingestion renames its download into manifest/ there
    model (a training's)       its out/<hex6>/model files copied beside the code (what they cannot be is named)

What it runs: a build, venv_builder.py (the executor adds it); an ingestion, ingest.py; a training, `./train
<output>`; an endpoint, `./serve`. Standard library and the backend's layout and blob store only.
"""
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Optional

from kaos_backend.executors.base import Artifact, ArtifactMissing, WorkloadSpec
from kaos_backend.executors.hints import script_hints
from kaos_backend.executors.local_process import ProcessSpec
from kaos_backend.executors.preamble import Preamble
from kaos_backend.layout import DataLayout
from kaos_backend.storage import BlobStore
from kaos_backend.untrusted import copy_tree, is_real_dir, is_regular

INGEST = str(Path(__file__).with_name("ingest.py"))
INGEST_WORKERS = 3  # the original's ingestion pipeline ran 3 workers
MANIFEST_NAME = "data.mf"


class Staging:
    """The artifacts of the backend whose data directory is `data_dir`, as this machine's directories."""

    def __init__(self, data_dir, max_bundle_bytes: Optional[int] = None):
        self.layout = DataLayout(data_dir)
        self.store = BlobStore(Path(data_dir) / "blobs")
        self.max_bundle_bytes = max_bundle_bytes

    # -- where each artifact is -------------------------------------------------------------------------------
    def bundle_root(self, artifact: Artifact) -> Path:
        """The bundle's top-level directory, extracted once (InvalidBundle, PayloadTooLarge for a stored bundle
        that today's checks refuse)."""
        self._expect(artifact, Artifact.BUNDLE)
        if not self.store.exists(artifact.ref):
            raise ArtifactMissing(artifact, str(self.store.path(artifact.ref)))
        return self.layout.extracted(self.store.path(artifact.ref), artifact.ref, self.max_bundle_bytes) / artifact.root

    def model_dir(self, source: Artifact) -> Path:
        """The code of a source bundle: its model/ directory, as extracted (read-only: copied before it runs)."""
        return self.bundle_root(source) / "model"

    def data_root(self, artifact: Artifact) -> Path:
        if artifact.kind == Artifact.INGESTED:
            root = self.layout.ingested_dir(artifact.ref)
            if not root.is_dir():
                raise ArtifactMissing(artifact, str(root))
            return root
        return self.bundle_root(artifact)

    def output_dir(self, artifact: Artifact) -> Path:
        """Where a training's output goes."""
        self._expect(artifact, Artifact.OUTPUT)
        job_id, hex6 = artifact.output_parts()
        return self.layout.output_dir(job_id, hex6)

    @staticmethod
    def _expect(artifact: Artifact, kind: str) -> None:
        if artifact.kind != kind:
            raise ValueError(f"expected a {kind} artifact, not {artifact}")

    # -- staging ----------------------------------------------------------------------------------------------
    def stage(self, spec: WorkloadSpec, home: Path) -> ProcessSpec:
        """Make the directories `spec`'s workload reads and writes, under `home` (the directory of its log) and
        the data directory, timing it for the log's preamble; the process to run there. Raises ArtifactMissing,
        InvalidBundle, PayloadTooLarge."""
        preamble = Preamble(spec.preamble)
        work = home / "work" / spec.job_id
        env = dict(spec.env)
        process = ProcessSpec(job_id=spec.job_id, kind=spec.kind, command=[], workdir=str(work), log=spec.log,
                              image=spec.image, env=env, cpu=spec.cpu, memory=spec.memory)
        with preamble.downloading():
            if spec.kind == "train":
                self.data_root(spec.data)  # the inputs first: data that cannot be staged leaves the rest unstaged
            shutil.rmtree(work, ignore_errors=True)
            if spec.source is not None:
                shutil.copytree(self.model_dir(spec.source), work)  # the bundle as extracted: no links in it
            else:
                work.mkdir(parents=True)
            stage_kind = {"train": self._train, "serve": self._serve, "ingestion": self._ingestion}.get(spec.kind)
            if stage_kind is not None:
                stage_kind(spec, process, home)
        process.preamble = preamble.lines()
        return process

    def hyperparameters_dir(self, spec: WorkloadSpec, home: Path) -> Path:
        """A new directory under `home` holding the training's hyperparameters file (none when it has none), for
        every executor that stages a training from this machine; ValueError for a file name leaving it."""
        hyper = home / "hyper" / spec.job_id
        shutil.rmtree(hyper, ignore_errors=True)
        hyper.mkdir(parents=True)
        if spec.hyperparameters is not None:
            target = hyper / spec.hyperparameters.file
            if hyper.resolve() not in target.resolve().parents:
                raise ValueError(f"a hyperparameters file outside its directory: {spec.hyperparameters.file!r}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(spec.hyperparameters.values))
        return hyper

    def _train(self, spec: WorkloadSpec, process: ProcessSpec, home: Path) -> None:
        work = Path(process.workdir)
        data = self.data_root(spec.data)
        hyper = self.hyperparameters_dir(spec, home)
        out = self.output_dir(spec.output)
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        _make_executable(work / "train")
        process.command = ["./train", str(out)]
        process.env.update(KAOS_TRAIN_DATA=str(data), KAOS_TRAIN_HYPER=str(hyper), KAOS_TRAIN_OUTPUT=str(out))
        process.inputs, process.outputs = [str(data), str(hyper)], [str(out)]
        process.hints = script_hints(work / "train")

    def _serve(self, spec: WorkloadSpec, process: ProcessSpec, home: Path) -> None:
        work = Path(process.workdir)
        left_out = []
        if spec.model is not None:
            model = self.output_dir(spec.model) / "model"
            if is_real_dir(model):
                left_out = copy_tree(model, work)  # model.pkl next to serve (§7.2); a training wrote it
        _make_executable(work / "serve")
        process.command = ["./serve"]
        notes = [f"kaos: left out of the model's files: {'; '.join(left_out[:20])}"] if left_out else []
        process.hints = notes + script_hints(work / "serve")

    def _ingestion(self, spec: WorkloadSpec, process: ProcessSpec, home: Path) -> None:
        self._expect(spec.data, Artifact.MANIFEST)
        self._expect(spec.output, Artifact.INGESTED)
        if not self.store.exists(spec.data.ref):
            raise ArtifactMissing(spec.data, str(self.store.path(spec.data.ref)))
        manifest = Path(process.workdir) / MANIFEST_NAME  # a copy the workload may read (the blob store is private)
        shutil.copyfile(self.store.path(spec.data.ref), manifest)
        out = self.layout.ingested_dir(spec.output.ref)  # made whole by a rename from a hidden sibling
        out.parent.mkdir(parents=True, exist_ok=True)
        process.command = [sys.executable, INGEST, "--manifest", str(manifest), "--out", str(out),
                           "--workers", str(INGEST_WORKERS)]
        process.outputs = [str(out.parent)]


def _make_executable(script: Path) -> None:
    if is_regular(script):
        os.chmod(script, script.stat().st_mode | 0o755)  # zips made on some systems lose the exec bit
