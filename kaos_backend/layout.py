"""Where the backend keeps files under its data directory, the cache of extracted bundles, and removing them.

    <data_dir>/blobs/…                 uploaded bytes (storage.BlobStore)
    <data_dir>/extracted/<digest>/     a bundle unpacked once, shared read-only by builds and trainings
    <data_dir>/extracted/<digest>.lock held while it is being unpacked
    <data_dir>/envs/<key>/             local images: virtualenvs keyed by requirements
    <data_dir>/envs/<key>.lock         held while it is being built (executors/venv_builder.py)
    <data_dir>/ingested/<digest>/manifest/   a data manifest's downloaded files (`<path>` of every line)
    <data_dir>/jobs/<job_id>/out/<hex6>/  a training's output (models, metrics), delivered by its executor
    <data_dir>/jobs/<job_id>/          the local executor's log, work/ and hyper/ directories of the job
    <data_dir>/endpoints/<name>/       the local executor's log and work/ directory of an endpoint
    <data_dir>/notebooks/<name>/       a notebook's log, its token's secret file, its runner's files (kill removes)
    <data_dir>/notebook-work/<ws>/<name>/  a notebook's work directory: kept when it is killed or culled, for
                                       the next notebook of the same workspace and user; its workspace's kill
                                       removes <ws>/, so that a new workspace of that name starts with none
    <data_dir>/trash/<batch>/          what a removal took away, until it is deleted (see `DataLayout.trash`)
"""
import errno
import fcntl
import logging
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import ContextManager, Iterator, List, Optional

from kaos_backend import bundles

COMPLETE_MARKER = ".kaos-complete"
LOCK_SUFFIX = ".lock"

log = logging.getLogger("kaos_backend.layout")


class HeldLock:
    """An exclusive `flock` on a lock file, held until its `exclusive_lock` block ends."""

    def __init__(self, path: Path, fd: int):
        self.path = path
        self.fd = fd

    def remove(self) -> None:
        """Delete the lock file while holding it: whoever waited on it finds it gone and locks the new one."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def _is_file_at(fd: int, path: Path) -> bool:
    try:
        at_path = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (at_path.st_dev, at_path.st_ino)


def _locked_fd(path: Path, wait: bool) -> Optional[int]:
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return None
        if _is_file_at(fd, path):
            return fd
        os.close(fd)  # removed (and maybe made anew) while we waited: lock the file that is there now


@contextmanager
def exclusive_lock(path: Path, wait: bool = True) -> Iterator[Optional[HeldLock]]:
    """Lock the file `path` (created if missing) for this block. Without `wait`, yields None at once when
    someone else holds it. A lock file removed while we waited for it (`HeldLock.remove`) locks nothing any
    more, so then the file now at `path` is locked instead."""
    fd = _locked_fd(path, wait)
    try:
        yield None if fd is None else HeldLock(path, fd)
    finally:
        if fd is not None:
            os.close(fd)


class Trash:
    """One removal's batch: each item is renamed in at once, so readers see it whole or not at all and locks
    are held only for a rename; the batch is deleted when the `DataLayout.trash()` block ends."""

    def __init__(self, batch_dir: Path):
        self.dir = batch_dir
        self._count = 0

    def take(self, path: Path) -> bool:
        """Move the file or directory `path` into the batch; False when there is nothing at `path`, or when it
        cannot be removed (logged: a file left behind is not worth failing the request that removes it)."""
        self._count += 1
        try:
            os.rename(path, self.dir / f"{self._count}-{path.name}")
            return True
        except FileNotFoundError:
            return False
        except OSError as error:
            if error.errno != errno.EXDEV:
                log.warning("Could not remove %s: %s", path, error)
                return False
        # on another file system than the trash (a directory mounted there): delete it where it is
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        return True


def _plain_name(name: str) -> str:
    """A single path component of our own making (a digest, an environment key); ValueError otherwise."""
    if not name or "/" in name or name.startswith(".") or name != os.path.basename(name):
        raise ValueError(f"not a plain file name: {name!r}")
    return name


class DataLayout:
    def __init__(self, data_dir):
        self.data_dir = Path(data_dir)

    @property
    def envs_dir(self) -> Path:
        """Where the LOCAL images (virtualenvs) live: <data>/envs, resolved when it is a symbolic link (to another
        disk, say): a sandboxed build binds its image's real path back into its view (executors/sandbox.py), and
        an image reference names the path that the build made."""
        return Path(os.path.realpath(self.data_dir / "envs"))

    @property
    def extracted_dir(self) -> Path:
        return self.data_dir / "extracted"

    @property
    def trash_dir(self) -> Path:
        return self.data_dir / "trash"

    def job_dir(self, job_id: str) -> Path:
        return self.data_dir / "jobs" / job_id

    def output_dir(self, job_id: str, hex6: str) -> Path:
        return self.job_dir(job_id) / "out" / hex6

    def ingested_dir(self, manifest_digest: str) -> Path:
        """Where the ingestion of the manifest blob `manifest_digest` puts its files: the data root of a
        training on that manifest. It exists only once every file arrived (the ingestion renames it into place);
        its partial attempts are hidden siblings beside it."""
        if not manifest_digest or "/" in manifest_digest or manifest_digest.startswith("."):
            raise ValueError(f"not a blob digest: {manifest_digest!r}")
        return self.data_dir / "ingested" / manifest_digest / "manifest"

    def extracted(self, blob_path: Path, digest: str, max_uncompressed: int = None) -> Path:
        """The bundle `digest` unpacked under `extracted/<digest>/`: done once, under a lock, visible only
        when complete (a crash half-way is redone). Returns the directory holding the bundle's root."""
        target = self.extracted_dir / _plain_name(digest)
        if (target / COMPLETE_MARKER).exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(target.parent / f"{digest}{LOCK_SUFFIX}"):
            if not (target / COMPLETE_MARKER).exists():
                shutil.rmtree(target, ignore_errors=True)
                bundles.safe_extract(blob_path, target, max_uncompressed)
                (target / COMPLETE_MARKER).write_text(str(time.time()))
        return target

    def endpoint_dir(self, name: str) -> Path:
        return self.data_dir / "endpoints" / name

    def notebook_dir(self, name: str) -> Path:
        return self.data_dir / "notebooks" / _plain_name(name)

    def notebook_work_dir(self, name: str, workspace: str) -> Path:
        """The work directory of the notebook `name` of `workspace`. ValueError for a name that is not plain."""
        return self.data_dir / "notebook-work" / _plain_name(workspace) / _plain_name(name)

    def remove_notebook(self, name: str) -> None:
        """Remove a notebook's log and secret file (not its work directory: remove_notebook_work)."""
        shutil.rmtree(self.notebook_dir(name), ignore_errors=True)

    def remove_notebook_work(self, workspace: Optional[str] = None) -> None:
        """Remove the kept work directories of the notebooks of `workspace` (of every workspace when None)."""
        root = self.data_dir / "notebook-work"
        shutil.rmtree(root / _plain_name(workspace) if workspace is not None else root, ignore_errors=True)

    def remove_endpoint(self, name: str) -> None:
        shutil.rmtree(self.endpoint_dir(name), ignore_errors=True)

    def remove_job(self, job_id: str) -> None:
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)

    # -- removing what no one uses any more ------------------------------------------------------------------
    @contextmanager
    def trash(self) -> Iterator[Trash]:
        """A batch to move removed items into, deleted when the block ends (also when it raises: what was
        moved is gone already), with the batches of removals that crashed half-way."""
        self.trash_dir.mkdir(parents=True, exist_ok=True)
        batch = None
        try:
            with open(self.trash_dir / LOCK_SUFFIX, "a") as filling:
                fcntl.flock(filling, fcntl.LOCK_SH)  # a batch being filled is never swept as a crashed one
                batch = Path(tempfile.mkdtemp(dir=self.trash_dir, prefix="batch-"))
                yield Trash(batch)
        finally:
            if batch is not None:
                shutil.rmtree(batch, ignore_errors=True)
            self._sweep_trash()

    def _sweep_trash(self) -> None:
        with open(self.trash_dir / LOCK_SUFFIX, "a") as filling:
            try:
                fcntl.flock(filling, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # another removal is filling its batch; the last one to finish sweeps
            for entry in self.trash_dir.iterdir():
                if entry.name != LOCK_SUFFIX:
                    shutil.rmtree(entry, ignore_errors=True)

    def remove_extracted(self, digest: str, trash: Trash) -> bool:
        """Move the extracted bundle `digest` and its lock file to `trash`. False, leaving both, while the bundle
        is being extracted. Only for a digest no bundle references, under the blob store's exclusive lock (so
        that no upload starts to reference it meanwhile)."""
        target = self.extracted_dir / _plain_name(digest)
        if not self.extracted_dir.is_dir():
            return True  # nothing was ever extracted
        with exclusive_lock(self.extracted_dir / f"{digest}{LOCK_SUFFIX}", wait=False) as lock:
            if lock is None:
                return False
            trash.take(target)
            lock.remove()
        return True

    def remove_ingested(self, manifest_digest: str, trash: Trash) -> None:
        """Move the ingested files of the manifest `manifest_digest` (and any partial attempt) to `trash`.
        Only for a manifest no bundle references, under the blob store's exclusive lock."""
        trash.take(self.ingested_dir(manifest_digest).parent)

    def env_key(self, image: Optional[str]) -> Optional[str]:
        """The key of a local image (a virtualenv under envs/), or None for any other image reference."""
        if not image or Path(image).parent != self.envs_dir or Path(image).name.startswith("."):
            return None
        return Path(image).name

    def env_lock(self, key: str) -> ContextManager[Optional[HeldLock]]:
        """The lock venv_builder holds while it builds the environment `key`, taken without waiting: yields
        None while a build holds it (a build may take minutes)."""
        self.envs_dir.mkdir(parents=True, exist_ok=True)
        return exclusive_lock(self.envs_dir / f"{_plain_name(key)}{LOCK_SUFFIX}", wait=False)

    def remove_env(self, key: str, lock: HeldLock, trash: Trash) -> None:
        """Move the environment `key` and its lock file (held by the caller, from `env_lock`) to `trash`."""
        trash.take(self.envs_dir / _plain_name(key))
        lock.remove()

    # -- what is on disk (for removing everything) ------------------------------------------------------------
    def extracted_digests(self) -> List[str]:
        return _names(self.extracted_dir)

    def ingested_digests(self) -> List[str]:
        return _names(self.data_dir / "ingested")

    def env_keys(self) -> List[str]:
        return _names(self.envs_dir)


def _names(directory: Path) -> List[str]:
    """The items of a cache directory: its visible entries, a lock file counting for the item it locks."""
    if not directory.is_dir():
        return []
    names = {entry.name[:-len(LOCK_SUFFIX)] if entry.name.endswith(LOCK_SUFFIX) else entry.name
             for entry in directory.iterdir()}
    return sorted(name for name in names if name and not name.startswith("."))
