"""How the docker executor stages a workload's artifacts (`executors/base.py`: a spec names them, never a path):
bind mounts of this machine's directories at kaos 1.x's paths, and the code copied into the container.

    source (a bundle)      its model/ files, copied into the image's working directory before the container
                           starts (a tar given to the engine): the spec's code runs, on the packages its image
                           installed (built from the same model/, it holds the same files)
    data (a bundle)        its top directory as extracted, read-only at /pfs/data/<name:hash5>: KAOS_TRAIN_DATA
    data (ingested files)  <data>/ingested/<digest>/manifest, read-only at /pfs/data/manifest:<hash5>
    hyperparameters        one JSON file in <log's directory>/hyper/<workload>/, read-only at /pfs/hyper
    output (a training's)  <data>/jobs/<job>/out/<hex6>, made empty, at /pfs/out/<hex6>: `./train /pfs/out/<hex6>`
    model (a training's)   its out/<hex6>/model files, copied beside the code (after it: they win)
    notebook               its kept work directory <data>/notebook-work/<ws>/<name> (seeded with the source's model/
                           files it lacks) mounted at the image's working directory; its data read-only at
                           /pfs/data/<name>, its model (a training's output) read-only at /pfs/out/<hex6>

The host's directories are local_staging.py's (the platform's layout and its cache of extracted bundles), so the
engine must run on the backend's machine. Files a workload wrote (a model) are copied by untrusted.py's rules:
no links, no special files, no hard links."""
import os
import shutil
import stat
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Dict, List, Optional, Tuple

from kaos_backend.executors import docker_spec, workload_env
from kaos_backend.executors.base import ArtifactMissing, WorkloadSpec
from kaos_backend.executors.hints import script_hints
from kaos_backend.executors.local_staging import Staging, input_name, seed_work_dir
from kaos_backend.executors.notebook_command import CONTAINER_PORT, jupyter_arguments, listen_arguments
from kaos_backend.untrusted import open_regular

SPOOL_BYTES = 16 * 1024 * 1024  # an archive bigger than this is spooled to a temporary file
SCRIPTS = ("train", "serve")     # made executable (zips made on some systems lose the exec bit)


@dataclass
class StagedContainer:
    """A workload once staged: what its container runs, and with what."""
    command: List[str]
    env: Dict[str, str] = field(default_factory=dict)
    mounts: List[Dict] = field(default_factory=list)   # docker_spec.bind(...)
    archive: Optional[BinaryIO] = None                 # a tar of the files copied into the working directory
    notes: List[str] = field(default_factory=list)     # log records about its inputs, before it runs
    port: Optional[int] = None                         # the port it listens on, published on 127.0.0.1


class DockerStaging:
    """The artifacts of the backend whose data directory is `data_dir`, as mounts and archives for the engine."""

    def __init__(self, data_dir, max_bundle_bytes: Optional[int] = None):
        self.files = Staging(data_dir, max_bundle_bytes)

    def bundle_root(self, source) -> Path:
        """A source bundle's top directory as extracted (its Dockerfile and model/): a build's context."""
        return self.files.bundle_root(source)

    def stage(self, spec: WorkloadSpec, home: Path, workdir: str = docker_spec.DEFAULT_WORKDIR) -> StagedContainer:
        """Make what `spec`'s workload reads and writes (under `home`, the directory of its log, and the data
        directory) and the archive of its code; `workdir` is the image's working directory. Raises
        ArtifactMissing (the inputs are looked at first: nothing is made for a workload that cannot start),
        InvalidBundle, PayloadTooLarge, ValueError."""
        if spec.kind == "train":
            return self._train(spec, home)
        if spec.kind == "serve":
            return self._serve(spec)
        if spec.kind == "notebook":
            return self._notebook(spec, workdir)
        raise ValueError(f"the docker executor runs no {spec.kind} workloads in containers")

    def _train(self, spec: WorkloadSpec, home: Path) -> StagedContainer:
        data = self.files.data_root(spec.data)
        code = self.files.model_dir(spec.source)
        hyper = self.files.hyperparameters_dir(spec, home)
        out = self.files.output_dir(spec.output)
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        out.chmod(0o777)  # the image's user may be another than root
        data_at, out_at = workload_env.train_targets(spec)
        archive, left_out = code_archive([code])
        return StagedContainer(
            command=["./train", out_at], env=workload_env.train_env(spec),
            mounts=[docker_spec.bind(str(data), data_at, True),
                    docker_spec.bind(str(hyper), workload_env.HYPER_DIR, True),
                    docker_spec.bind(str(out), out_at, False)],
            archive=archive, notes=_left_out("the code", left_out) + script_hints(code / "train"))

    def _serve(self, spec: WorkloadSpec) -> StagedContainer:
        code = self.files.model_dir(spec.source)
        trees = [code]
        if spec.model is not None:
            trees.append(self.files.output_dir(spec.model) / "model")  # model.pkl next to serve (§7.2)
        archive, left_out = code_archive(trees)
        return StagedContainer(
            command=["./serve"], env=workload_env.serve_env(),
            archive=archive, port=docker_spec.SERVE_PORT,
            notes=_left_out("the files copied beside ./serve", left_out) + script_hints(code / "serve"))

    def _notebook(self, spec: WorkloadSpec, workdir: str) -> StagedContainer:
        data = [(artifact, self.files.data_root(artifact)) for artifact in spec.attached]  # the inputs first
        model = self.files.output_dir(spec.model) if spec.model is not None else None
        if model is not None and not model.is_dir():
            raise ArtifactMissing(spec.model, str(model))
        work = self.files.layout.notebook_work_dir(spec.job_id, spec.env.get("KAOS_WORKSPACE", ""))
        work.mkdir(parents=True, exist_ok=True)
        if spec.source is not None:
            seed_work_dir(self.files.model_dir(spec.source), work)
        mounts = [docker_spec.bind(str(work), workdir, False)]
        mounts += [docker_spec.bind(str(root), docker_spec.data_target(input_name(artifact)), True)
                   for artifact, root in data]
        env = {"KAOS_NOTEBOOK_DATA": workload_env.DATA_ROOT, "DATA_REPO": "data"}  # 1.x: /pfs/$DATA_REPO
        if model is not None:
            target = workload_env.output_target(spec.model.output_parts()[1])
            mounts.append(docker_spec.bind(str(model), target, True))
            env["KAOS_NOTEBOOK_MODEL"] = target
        command = ["jupyter", "lab", *jupyter_arguments(spec.base_url, workdir, spec.idle_timeout),
                   *listen_arguments("0.0.0.0", CONTAINER_PORT)]
        return StagedContainer(command=command, env=env, mounts=mounts, port=CONTAINER_PORT)


def code_archive(trees: List[Path]) -> Tuple[BinaryIO, List[str]]:
    """A tar of the directories and regular files of each of `trees` (a missing one is skipped), merged in order
    (a later tree's file replaces an earlier one's), readable by any user, `train` and `serve` executable; and
    what was left out (`["sub/name (a symbolic link)", ...]`). The archive is rewound, ready to be sent."""
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)
    left_out: List[str] = []
    with tarfile.open(fileobj=spool, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for tree in trees:
            if tree.is_dir() and not tree.is_symlink():
                left_out += _add_tree(archive, tree)
    spool.seek(0)
    return spool, left_out


def _add_tree(archive: tarfile.TarFile, tree: Path) -> List[str]:
    left_out = []
    for root, dirs, files in os.walk(tree):  # os.walk does not follow links to directories
        relative = Path(root).relative_to(tree)
        for name in sorted(dirs):
            path = Path(root, name)
            if path.is_symlink():
                left_out.append(f"{relative / name} (a symbolic link)")
                continue
            entry = tarfile.TarInfo(str(relative / name))
            entry.type, entry.mode, entry.mtime = tarfile.DIRTYPE, 0o755, int(os.lstat(path).st_mtime)
            archive.addfile(entry)
        dirs[:] = sorted(name for name in dirs if not Path(root, name).is_symlink())
        for name in sorted(files):
            why = _add_file(archive, Path(root, name), str(relative / name))
            if why:
                left_out.append(f"{relative / name} ({why})")
    return left_out


def _add_file(archive: tarfile.TarFile, path: Path, name: str) -> Optional[str]:
    handle, why = open_regular(path)
    if handle is None:
        return why
    with handle:
        info = os.fstat(handle.fileno())
        entry = tarfile.TarInfo(name[2:] if name.startswith("./") else name)
        entry.size, entry.mtime = info.st_size, int(info.st_mtime)
        mode = stat.S_IMODE(info.st_mode) & 0o755 | 0o644
        entry.mode = 0o755 if Path(name).name in SCRIPTS and Path(name).parent == Path(".") else mode
        archive.addfile(entry, handle)
    return None


def _left_out(what: str, left_out: List[str]) -> List[str]:
    return [f"kaos: left out of {what}: {'; '.join(left_out[:20])}"] if left_out else []
