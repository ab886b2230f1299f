"""Upload a bundle folder, compressing it only when the backend needs its bytes.

A folder whose files have not changed since its last zip (`kaos_cli.bundle_cache`: same fingerprint, not racy) is
offered to the backend by that zip's digest; only when the fingerprint changed, or the backend does not store
that digest (another backend, a workspace killed since), is the folder zipped and the zip sent (by digest again
when the backend has those bytes under another folder's name)."""
import time
from pathlib import Path
from typing import Any, Callable, Optional

from kaos_cli.bundle_cache import DigestCache, fingerprint, is_racy
from kaos_cli.bundles import TemporaryBundle, bundle_entries
from kaos_cli.client import BlobNotStored, sha256_file

# send(zip_path, digest): the upload route's answer. zip_path None means "by digest alone": it raises
# BlobNotStored when the backend does not store that digest.
Send = Callable[[Optional[Path], str], Any]


def _warning(message: str) -> None:
    from kaos_cli import render

    render.warning(message)


def upload_folder(folder, zip_name: str, label: str, send: Send, progress: bool = True,
                  cache: Optional[DigestCache] = None) -> Any:
    """Upload `folder` through `send` and return its answer. `zip_name` and `label` name the temporary zip and
    its progress bars ("Compressing <label>"); `cache` defaults to the project's (`.kaos/bundle-digests.json`).
    Raises `KaosError` for a folder a bundle may not hold (before anything is sent) and whatever `send` raises."""
    cache = cache if cache is not None else DigestCache(warn=_warning)
    walk_started_ns = time.time_ns()
    entries = bundle_entries(folder)
    folder_fingerprint = fingerprint(entries)
    digest = cache.lookup(folder, folder_fingerprint)
    if digest:
        try:
            answer = send(None, digest)
        except BlobNotStored:
            pass
        else:
            cache.remember(folder, folder_fingerprint, digest, trusted=True)
            return answer
    with TemporaryBundle(folder, zip_name, label, progress, entries=entries) as zip_path:
        digest = sha256_file(zip_path)
        cache.remember(folder, folder_fingerprint, digest, trusted=not is_racy(entries, walk_started_ns))
        return send(zip_path, digest)
