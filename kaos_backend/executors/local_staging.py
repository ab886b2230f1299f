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
    notebook                   its own work directory, <data>/notebook-work/<ws>/<name>, kept from one notebook to the
                               next (seeded with the source's model/ files it lacks); its data (bundles as
                               extracted, ingested files) linked at <work>/pfs/data/<name> and its model (a
                               training's output) at <work>/pfs/out/<hex6>: inputs, so read-only in the sandbox

What it runs: a build, venv_builder.py (the executor adds it); an ingestion, ingest.py; a training, `./train
<output>`; an endpoint, `./serve`; a notebook, the image's `jupyter lab` (notebook_command.py; the executor adds
where it listens). Standard library and the backend's layout and blob store only.
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
from kaos_backend.executors.notebook_command import jupyter_arguments
from kaos_backend.executors.preamble import Preamble
from kaos_backend.layout import DataLayout
from kaos_backend.storage import BlobStore
from kaos_backend.untrusted import copy_tree, is_real_dir, is_regular

INGEST = str(Path(__file__).with_name("ingest.py"))
INGEST_WORKERS = 3  # the original's ingestion pipeline ran 3 workers
MANIFEST_NAME = "data.mf"
NOTEBOOK_INPUTS = "pfs"  # the directory of a notebook's work directory where its data and model are linked


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
        if spec.kind == "notebook":
            return self._notebook(spec, preamble)
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

    def _notebook(self, spec: WorkloadSpec, preamble: Preamble) -> ProcessSpec:
        """A notebook: its kept work directory, its inputs linked under <work>/pfs, `jupyter lab` of its image."""
        work = self.layout.notebook_work_dir(spec.job_id, spec.env.get("KAOS_WORKSPACE", ""))
        with preamble.downloading():
            data = [(artifact, self.data_root(artifact)) for artifact in spec.attached]  # the inputs first
            model = self.output_dir(spec.model) if spec.model is not None else None
            if model is not None and not is_real_dir(model):
                raise ArtifactMissing(spec.model, str(model))
            work.mkdir(parents=True, exist_ok=True)
            if spec.source is not None:
                seed_work_dir(self.model_dir(spec.source), work)
            inputs = work / NOTEBOOK_INPUTS
            remove_entry(inputs)  # kaos's: remade at every start (links only), whatever the notebook made of it
            (inputs / "data").mkdir(parents=True)
            for artifact, root in data:
                (inputs / "data" / input_name(artifact)).symlink_to(root, target_is_directory=True)
            env = {**spec.env, **spec.secrets, "KAOS_NOTEBOOK_DATA": str(inputs / "data"),
                   "DATA_REPO": str(inputs / "data")}  # 1.x's notebooks read /pfs/$DATA_REPO: absolute works
            if model is not None:
                (inputs / "out").mkdir()
                link = inputs / "out" / spec.model.output_parts()[1]
                link.symlink_to(model, target_is_directory=True)
                env["KAOS_NOTEBOOK_MODEL"] = str(link)
            if (work / ".jupyter").is_dir():
                env["JUPYTER_CONFIG_DIR"] = str(work / ".jupyter")  # the bundle's Jupyter settings, kept with it
        jupyter = str(Path(spec.image) / "bin" / "jupyter") if spec.image else "jupyter"
        hints = [] if not spec.image or (Path(spec.image) / "bin" / "jupyter").exists() else [
            "kaos: the notebook's image has no jupyter: its model/requirements.txt must install jupyterlab"]
        return ProcessSpec(job_id=spec.job_id, kind=spec.kind, workdir=str(work), log=spec.log, image=spec.image,
                           command=[jupyter, "lab", *jupyter_arguments(spec.base_url, str(work), spec.idle_timeout)],
                           env=env, inputs=[str(root) for _, root in data] + ([str(model)] if model else []),
                           hints=hints, cpu=spec.cpu, memory=spec.memory, preamble=preamble.lines())

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


def input_name(artifact: Artifact) -> str:
    """The directory name an attached data artifact gets (/pfs/data/<it>): its name as users see it
    ("features:9fd9d", "manifest:1a2b3"), never a path."""
    return (artifact.name or artifact.ref[:5]).replace("/", "_").lstrip(".") or "data"


def seed_work_dir(model: Path, work: Path) -> None:
    """Copy into `work` the files of `model` (a source bundle's model/, as extracted: no links) that it does not
    hold yet: a notebook's own edits win over its bundle's files.

    `work` is written by the notebook's own user, and this runs as the backend's (root): a directory of `work`
    that the notebook turned into a link (or a file) is left alone, never followed, so a notebook cannot make
    the backend write outside its work directory."""
    for root, directories, files in os.walk(model):
        target = work / os.path.relpath(root, model)
        if target != work and (os.path.islink(target) or (os.path.lexists(target) and not target.is_dir())):
            directories[:] = []  # the notebook's own entry wins; nothing beneath it is seeded
            continue
        target.mkdir(exist_ok=True)
        for name in files:
            if not os.path.lexists(target / name):
                shutil.copy2(os.path.join(root, name), target / name)


def remove_entry(path: Path) -> None:
    """Remove `path` whatever it is (a directory tree, a file, a link: the link itself, never what it points
    at); nothing when it is not there."""
    if os.path.islink(path) or (os.path.lexists(path) and not path.is_dir()):
        os.unlink(path)
    else:
        shutil.rmtree(path, ignore_errors=True)


def _make_executable(script: Path) -> None:
    if is_regular(script):
        os.chmod(script, script.stat().st_mode | 0o755)  # zips made on some systems lose the exec bit
