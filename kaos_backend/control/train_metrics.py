"""A training's metrics: the first JSON object of its output's `metrics/**/*metrics*.json` (reference §9), read
with bounds (no link followed, at most MAX_METRICS_FILES files of MAX_METRICS_BYTES each)."""
import fnmatch
import json
import os
from pathlib import Path
from typing import Dict, Optional

from kaos_backend.untrusted import is_real_dir, read_file

MAX_METRICS_BYTES = 1024 * 1024  # a metrics file is a flat JSON object: more is not metrics
MAX_METRICS_FILES = 1000


def read_metrics(out: Path) -> Optional[Dict]:
    """The first `metrics/**/*metrics*.json` (sorted paths; no link followed) holding a JSON object, else None."""
    metrics = out / "metrics"
    if not is_real_dir(metrics):
        return None
    candidates = []
    for root, dirs, files in os.walk(metrics):  # os.walk does not follow links to directories
        dirs.sort()
        candidates += [Path(root, name) for name in files if fnmatch.fnmatch(name, "*metrics*.json")]
        if len(candidates) >= MAX_METRICS_FILES:
            break
    for path in sorted(candidates)[:MAX_METRICS_FILES]:
        data = read_file(path, MAX_METRICS_BYTES)
        try:
            value = json.loads(data) if data is not None else None
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None
