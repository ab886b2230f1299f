"""Data manifests: one JSON object per line, `{"url": "http(s)://…", "path": "relative/path"}`."""
import json
import re
from pathlib import Path
from typing import List, NamedTuple
from urllib.parse import urlsplit

from kaos_backend.errors import InvalidManifest

_DRIVE_RE = re.compile(r"^[A-Za-z]:")


class ManifestEntry(NamedTuple):
    url: str
    path: str


def path_problem(path: str) -> str:
    """Why `path` is not a safe relative file path, or "" when it is."""
    if not path.strip():
        return "it is empty"
    if "\\" in path or "\x00" in path:
        return "it holds a backslash or a NUL character"
    if path.startswith("/") or _DRIVE_RE.match(path):
        return "it is absolute"
    parts = path.split("/")
    if ".." in parts:
        return "it has a '..' component"
    if path.endswith("/") or all(part in ("", ".") for part in parts):
        return "it names a directory, not a file"
    return ""


def read_manifest(path: Path) -> List[ManifestEntry]:
    """Parse and validate a manifest file; InvalidManifest names the first bad line."""
    entries, seen = [], {}
    with open(path, "rb") as manifest:
        for number, raw in enumerate(manifest, start=1):
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                raise InvalidManifest(f"Manifest line {number} is not UTF-8 text") from None
            if not line:
                continue
            try:
                entry = json.loads(line)
            except (ValueError, RecursionError):
                raise InvalidManifest(f"Manifest line {number} is not valid JSON") from None
            if not isinstance(entry, dict):
                raise InvalidManifest(f"Manifest line {number} is not a JSON object")
            url, target = entry.get("url"), entry.get("path")
            if not isinstance(url, str) or not _is_http_url(url):
                raise InvalidManifest(f"Manifest line {number}: 'url' must be an http or https URL, got {url!r}")
            if not isinstance(target, str):
                raise InvalidManifest(f"Manifest line {number}: 'path' must be a string, got {target!r}")
            problem = path_problem(target)
            if problem:
                raise InvalidManifest(f"Manifest line {number}: path {target!r} is not a safe relative path: "
                                      f"{problem}")
            normalized = "/".join(part for part in target.split("/") if part not in ("", "."))
            if normalized in seen:
                raise InvalidManifest(f"Manifest line {number}: path {target!r} is already used on line "
                                      f"{seen[normalized]}")
            seen[normalized] = number
            entries.append(ManifestEntry(url, normalized))
    if not entries:
        raise InvalidManifest("Manifest must hold at least one line")
    return entries


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not any(c.isspace() for c in url)
