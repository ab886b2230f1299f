"""A training's output handed back by a workload running elsewhere (a pod): a zip of its /pfs/out/<hex6>, put where
every executor delivers outputs (DataLayout.output_dir) whole or not at all.

The body is spooled to a file beside the output (bounded: KAOS_MAX_UPLOAD_MB, as every upload), checked and
extracted by bundles.safe_extract (the rules of bundle uploads: no absolute paths, no `..`, no links or special
files, bounded members, depth and uncompressed size: KAOS_MAX_BUNDLE_MB) into a hidden temporary directory, then
renamed into place under a lock. A second hand-back of the same output is accepted when its files are identical (a
retry whose first answer was lost) and refused (409 OUTPUT_EXISTS) otherwise; a refused or interrupted one leaves
nothing behind. As for bundles, hidden top-level entries (`.DS_Store`, `__MACOSX/`) are left out."""
import filecmp
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, Dict, Optional

from kaos_backend import bundles
from kaos_backend.errors import NotFound, OutputExists, PayloadTooLarge
from kaos_backend.executors.base import WorkloadSpec
from kaos_backend.layout import DataLayout, exclusive_lock

CHUNK = 1024 * 1024


class PodOutput:
    def __init__(self, data_dir, max_upload_bytes: Optional[int] = None, max_bundle_bytes: Optional[int] = None):
        self.layout = DataLayout(data_dir)
        self.max_upload_bytes = max_upload_bytes
        self.max_bundle_bytes = max_bundle_bytes

    def target(self, spec: WorkloadSpec) -> Path:
        """Where `spec`'s output goes; NotFound when its workload writes none (not a training)."""
        if spec.kind != "train" or spec.output is None:
            raise NotFound(f"Workload {spec.job_id} hands back no output")
        return self.layout.output_dir(*spec.output.output_parts())

    def receive(self, spec: WorkloadSpec, stream: BinaryIO) -> Dict:
        """Take the zip read from `stream` as `spec`'s output: `{"output": "<job>/<hex6>", "files": N, "bytes": N,
        "created": bool}` (`created` False for an identical second hand-back). NotFound, PayloadTooLarge,
        InvalidBundle, OutputExists; whatever reading `stream` raises (a client gone mid-body) likewise leaves
        nothing."""
        target = self.target(spec)
        target.parent.mkdir(parents=True, exist_ok=True)
        hidden = f".{target.name}."
        archive = tempfile.NamedTemporaryFile(dir=target.parent, prefix=hidden, suffix=".zip", delete=False)
        unpacked = Path(tempfile.mkdtemp(dir=target.parent, prefix=hidden))
        try:
            with archive:
                _spool(stream, archive, self.max_upload_bytes)
            written = bundles.safe_extract(Path(archive.name), unpacked, self.max_bundle_bytes)
            os.chmod(unpacked, 0o755)
            answer = {"output": spec.output.ref, "files": len(written),
                      "bytes": sum(path.stat().st_size for path in written)}
            with exclusive_lock(target.parent / f"{hidden}lock") as lock:
                try:
                    if target.exists():
                        if not same_tree(unpacked, target):
                            raise OutputExists(f"The output {spec.output.ref} was handed back already, with "
                                               "other files")
                        return {**answer, "created": False}
                    os.rename(unpacked, target)
                    return {**answer, "created": True}
                finally:
                    lock.remove()  # a hand-back waiting for it locks a new file, and finds the output there
        finally:
            os.unlink(archive.name)
            shutil.rmtree(unpacked, ignore_errors=True)


def _spool(stream: BinaryIO, sink: BinaryIO, limit: Optional[int]) -> None:
    size = 0
    for chunk in iter(lambda: stream.read(CHUNK), b""):
        size += len(chunk)
        if limit is not None and size > limit:
            raise PayloadTooLarge(f"The output is larger than the limit of {limit // (1024 * 1024)} MB")
        sink.write(chunk)


def same_tree(left: Path, right: Path) -> bool:
    """Whether two directories hold the same names, directories and file contents (links are never compared
    equal: neither side should hold any)."""
    def listing(root: Path) -> Dict[str, bool]:
        found = {}
        for current, dirs, files in os.walk(root):
            for name in dirs + files:
                path = Path(current, name)
                found[str(path.relative_to(root))] = path.is_dir() and not path.is_symlink()
        return found

    names = listing(left)
    if names != listing(right):
        return False
    return all(is_dir or (not Path(left, name).is_symlink() and not Path(right, name).is_symlink()
                          and filecmp.cmp(left / name, right / name, shallow=False))
               for name, is_dir in names.items())
