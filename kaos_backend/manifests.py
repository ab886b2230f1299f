"""Data manifests: one JSON object per line, `{"url": "http(s)://…", "path": "relative/path"}`.

The rules live once, in `executors/ingest.py` (which runs standalone, by path, and re-checks what it downloads);
here they answer an upload with InvalidManifest."""
from pathlib import Path
from typing import List, NamedTuple

from kaos_backend.errors import InvalidManifest
from kaos_backend.executors import ingest

path_problem = ingest.path_problem


class ManifestEntry(NamedTuple):
    url: str
    path: str


def read_manifest(path: Path) -> List[ManifestEntry]:
    """Parse and validate a manifest file; InvalidManifest names the first bad line."""
    try:
        return [ManifestEntry(entry.url, entry.path) for entry in ingest.read_manifest(str(path))]
    except ingest.ManifestError as error:
        raise InvalidManifest(f"Manifest {error}") from None
