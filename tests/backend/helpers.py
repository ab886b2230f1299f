"""Zip bundles for backend tests, written entry by entry so that unsafe members can be made on purpose."""
import io
import stat
import zipfile
from typing import Dict, Iterable, Optional, Tuple, Union

Entry = Union[bytes, str, None]  # bytes/str = a file, None = a directory


def zip_bytes(entries: Dict[str, Entry], special: Iterable[Tuple[str, int, bytes]] = ()) -> bytes:
    """A zip of `entries` (name → content, None for a directory) plus `special` (name, st_mode, content)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            if content is None:
                info = zipfile.ZipInfo(name if name.endswith("/") else name + "/")
                info.external_attr = (stat.S_IFDIR | 0o755) << 16
                archive.writestr(info, b"")
            else:
                info = zipfile.ZipInfo(name)
                info.external_attr = (stat.S_IFREG | 0o644) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, content)
        for name, mode, content in special:
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = mode << 16
            archive.writestr(info, content)
    return buffer.getvalue()


def symlink_entry(name: str, target: str) -> Tuple[str, int, bytes]:
    return name, stat.S_IFLNK | 0o777, target.encode()


def features_zip(root: str = "features", extra: Optional[Dict[str, Entry]] = None) -> bytes:
    entries = {f"{root}/training/train.csv": "1,2,3\n", f"{root}/validation/valid.csv": "4,5,6\n"}
    entries.update(extra or {})
    return zip_bytes(entries)


TRAIN_FILES = ("__init__.py", "requirements.txt", "train")
SERVE_FILES = ("__init__.py", "serve", "web-requirements.txt")


def source_entries(root: str = "mnist", model_files: Iterable[str] = TRAIN_FILES,
                   dockerfile: bool = True) -> Dict[str, Entry]:
    entries: Dict[str, Entry] = {f"{root}/model/": None}
    if dockerfile:
        entries[f"{root}/Dockerfile"] = "FROM python:3.11-slim\n"
    for name in model_files:
        entries[f"{root}/model/{name}"] = f"# {name}\n"
    return entries


def source_zip(root: str = "mnist", model_files: Iterable[str] = TRAIN_FILES, dockerfile: bool = True) -> bytes:
    return zip_bytes(source_entries(root, model_files, dockerfile))
