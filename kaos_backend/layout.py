"""Where the backend keeps files under its data directory, and the cache of extracted bundles.

    <data_dir>/blobs/…                 uploaded bytes (storage.BlobStore)
    <data_dir>/extracted/<digest>/     a bundle unpacked once, shared read-only by builds and trainings
    <data_dir>/envs/<key>/             local images: virtualenvs keyed by requirements
    <data_dir>/ingested/<digest>/manifest/   a data manifest's downloaded files (`<path>` of every line)
    <data_dir>/jobs/<job_id>/log       a job's log; work/, hyper/ and out/ beside it
    <data_dir>/endpoints/<name>/       an endpoint's log and work/ directory
"""
import fcntl
import shutil
import time
from pathlib import Path

from kaos_backend import bundles

COMPLETE_MARKER = ".kaos-complete"


class DataLayout:
    def __init__(self, data_dir):
        self.data_dir = Path(data_dir)

    @property
    def envs_dir(self) -> Path:
        return self.data_dir / "envs"

    def job_dir(self, job_id: str) -> Path:
        return self.data_dir / "jobs" / job_id

    def log_path(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "log"

    def work_dir(self, job_id: str, index: int = 0) -> Path:
        return self.job_dir(job_id) / "work" / str(index)

    def hyper_dir(self, job_id: str, index: int) -> Path:
        return self.job_dir(job_id) / "hyper" / str(index)

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
        target = self.data_dir / "extracted" / digest
        if (target / COMPLETE_MARKER).exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target.parent / f"{digest}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (target / COMPLETE_MARKER).exists():
                shutil.rmtree(target, ignore_errors=True)
                bundles.safe_extract(blob_path, target, max_uncompressed)
                (target / COMPLETE_MARKER).write_text(str(time.time()))
        return target

    def endpoint_dir(self, name: str) -> Path:
        return self.data_dir / "endpoints" / name

    def remove_endpoint(self, name: str) -> None:
        shutil.rmtree(self.endpoint_dir(name), ignore_errors=True)

    def remove_job(self, job_id: str) -> None:
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)
