"""Zips produced as a stream (for `train get` and `serve get`): files are read and compressed chunk by chunk, so a
bundle of any size never sits in memory whole."""
import os
import time
import zipfile
from pathlib import Path
from typing import Iterator, List, NamedTuple, Optional

ZIP_CHUNK = 1024 * 1024


class ZipEntry(NamedTuple):
    """One member of a bundle zip: a file on disk (`path`), bytes (`data`), or an empty directory (neither)."""
    name: str
    path: Optional[Path] = None
    data: Optional[bytes] = None


def tree_entries(root: Path, prefix: str) -> List[ZipEntry]:
    """The regular files under `root` as `<prefix>/<relative path>` (and its empty directories), sorted.
    Symbolic links are left out, never followed: an output directory is written by user code, and a link
    must not ship a file of the backend's host."""
    entries: List[ZipEntry] = []
    if not root.is_dir() or root.is_symlink():
        return entries
    for current, dirs, files in os.walk(root):
        current_path = Path(current)
        dirs[:] = sorted(name for name in dirs if not (current_path / name).is_symlink())
        relative = current_path.relative_to(root).as_posix()
        base = prefix if relative == "." else f"{prefix}/{relative}"
        regular = [name for name in sorted(files)
                   if not (current_path / name).is_symlink() and (current_path / name).is_file()]
        for name in regular:
            entries.append(ZipEntry(f"{base}/{name}", path=current_path / name))
        if not regular and not dirs and relative != ".":
            entries.append(ZipEntry(base + "/"))
    entries.sort(key=lambda entry: entry.name)
    return entries


class _Sink:
    """A write-only, unseekable stream for `zipfile`: what is written is collected until drained."""

    def __init__(self):
        self._chunks: List[bytes] = []

    def write(self, data) -> int:
        self._chunks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def drain(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


class StreamedZip:
    """A zip produced as a stream of chunks: at most about one chunk of a file is held in memory."""

    def __init__(self, entries: List[ZipEntry]):
        self.entries = entries

    @property
    def names(self) -> List[str]:
        return [entry.name for entry in self.entries]

    def chunks(self) -> Iterator[bytes]:
        sink = _Sink()
        with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED) as archive:
            for entry in self.entries:
                if entry.path is not None:
                    try:
                        info = zipfile.ZipInfo.from_file(entry.path, entry.name)
                        source = open(entry.path, "rb")
                    except FileNotFoundError:  # removed since the bundle was planned (its workspace killed)
                        continue
                    info.compress_type = zipfile.ZIP_DEFLATED
                    with source, archive.open(info, "w") as target:
                        for block in iter(lambda: source.read(ZIP_CHUNK), b""):
                            target.write(block)
                            data = sink.drain()
                            if data:
                                yield data
                elif entry.data is not None:
                    info = zipfile.ZipInfo(entry.name, date_time=_now_tuple())
                    info.external_attr = 0o100644 << 16
                    info.compress_type = zipfile.ZIP_DEFLATED
                    archive.writestr(info, entry.data)
                else:
                    info = zipfile.ZipInfo(entry.name, date_time=_now_tuple())
                    info.external_attr = (0o40755 << 16) | 0x10
                    archive.writestr(info, b"")
                data = sink.drain()
                if data:
                    yield data
        data = sink.drain()
        if data:
            yield data

    def to_bytes(self) -> bytes:
        return b"".join(self.chunks())


def _now_tuple():
    return time.localtime()[:6]
