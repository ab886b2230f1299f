"""The directory tree a bundle's member names describe, and the layouts data and source bundles must have.

The tree is indexed by parent directory and built in one pass, each member costing one dictionary step per path
component: linear in the members (whose depth `bundles.py` bounds), never a scan of all directories per lookup.
"""
import zipfile
from typing import Dict, Iterable, List, NamedTuple, Optional, Set, Tuple

from kaos_model.bundles import MAX_BUNDLE_MEMBERS

from kaos_backend.errors import InvalidBundle

MAX_SHOWN = 400  # characters of a member name in a message; longer ones are shortened in the middle


class Member(NamedTuple):
    info: zipfile.ZipInfo
    parts: Tuple[str, ...]  # path components, without "" and "."
    is_dir: bool


def shown(name: str) -> str:
    """A member name for a message: control characters and undecodable bytes escaped, a huge name shortened in
    the middle (its length in characters added)."""
    text = "".join(char if char.isprintable() else ascii(char)[1:-1] for char in name)
    if len(text) > MAX_SHOWN:
        text = f"{text[:MAX_SHOWN // 2]}...{text[-MAX_SHOWN // 2:]} ({len(name)} characters)"
    return text


def too_many_members() -> InvalidBundle:
    return InvalidBundle(f"Bundle holds more than {MAX_BUNDLE_MEMBERS:,} members (files and directories, those "
                         f"its paths imply included): the limit is {MAX_BUNDLE_MEMBERS:,}")


class BundleTree:
    """Which names are files and which are directories (directories may be implicit in the members' paths).

    InvalidBundle when a name is both a file and a directory, when two members have the same path (`a/b` and
    `a/./b` included: extracting both, the last would silently win), or when files and directories together,
    implied ones included, are more than MAX_BUNDLE_MEMBERS (so the tree's memory is bounded too)."""

    TOP = 0  # the id of the bundle's top level; every directory gets the next free id

    def __init__(self, members: Iterable[Member]):
        self._dirs: Dict[Tuple[int, str], int] = {}   # (parent id, name) → directory id
        self._files: Set[Tuple[int, str]] = set()      # (parent id, name)
        self._dir_names: Dict[int, List[str]] = {}     # parent id → names of the directories in it
        self._file_names: Dict[int, List[str]] = {}    # parent id → names of the files in it
        self._with_files: Set[int] = set()             # directories with a file somewhere below
        self._listed_dirs: Set[int] = set()            # directories that are members themselves, not only implied
        for member in members:
            self._add(member)

    def _add(self, member: Member) -> None:
        parent, ancestors = self.TOP, []
        dir_parts = member.parts if member.is_dir else member.parts[:-1]
        for depth, name in enumerate(dir_parts, start=1):
            key = (parent, name)
            if key in self._files:
                raise _clash(member.parts[:depth])
            node = self._dirs.get(key)
            if node is None:
                self._make_room()
                node = self._dirs[key] = len(self._dirs) + 1
                self._dir_names.setdefault(parent, []).append(name)
            parent = node
            ancestors.append(node)
        if member.is_dir:
            if parent in self._listed_dirs:
                raise _stored_twice(member.parts)
            self._listed_dirs.add(parent)
            return
        key = (parent, member.parts[-1])
        if key in self._dirs:
            raise _clash(member.parts)
        if key in self._files:
            raise _stored_twice(member.parts)
        self._make_room()
        self._files.add(key)
        self._file_names.setdefault(parent, []).append(key[1])
        self._with_files.update(ancestors)

    def _make_room(self) -> None:
        if len(self._dirs) + len(self._files) >= MAX_BUNDLE_MEMBERS:
            raise too_many_members()

    def _find(self, path: Tuple[str, ...]) -> Optional[int]:
        node = self.TOP
        for name in path:
            node = self._dirs.get((node, name))
            if node is None:
                return None
        return node

    def children(self, parent: Tuple[str, ...]) -> Tuple[List[str], List[str]]:
        """(directory names, file names) directly under `parent`, sorted; empty when there is no such
        directory."""
        node = self._find(parent)
        if node is None:
            return [], []
        return sorted(self._dir_names.get(node, ())), sorted(self._file_names.get(node, ()))

    def has_files_under(self, parent: Tuple[str, ...]) -> bool:
        return self._find(parent) in self._with_files


def _clash(parts: Tuple[str, ...]) -> InvalidBundle:
    return InvalidBundle(f"Bundle member {shown('/'.join(parts))} is both a file and a directory")


def _stored_twice(parts: Tuple[str, ...]) -> InvalidBundle:
    return InvalidBundle(f"Bundle member {shown('/'.join(parts))} is stored more than once: a path may appear "
                         "only once in a bundle")


def data_root(tree: BundleTree) -> str:
    """The one top-level directory of a data bundle, which must hold a file; InvalidBundle otherwise."""
    dirs, files = tree.children(())
    entries = dirs + files
    if len(entries) > 1:
        raise InvalidBundle(f"Data bundle must hold exactly one top-level directory, found {len(entries)} "
                            f"entries: {', '.join(shown(entry) for entry in entries[:20])}"
                            + (", ..." if len(entries) > 20 else ""))
    if files:
        raise InvalidBundle(f"Data bundle must hold one top-level directory, found the file {shown(files[0])}")
    root = dirs[0]
    if not tree.has_files_under((root,)):
        raise InvalidBundle(f"Data directory {shown(root)} must be non-empty")
    return root


def source_root(tree: BundleTree, required_files: Iterable[str]) -> str:
    """The one root directory of a source bundle, holding `Dockerfile` and `model/` with `required_files`;
    InvalidBundle otherwise."""
    dirs, files = tree.children(())
    if len(dirs) > 1:
        raise InvalidBundle("Too many directories in source-code bundle")
    if not dirs:
        raise InvalidBundle("Missing root directory in source-code bundle")
    if files:
        raise InvalidBundle(f"Unexpected file {shown(files[0])} at the root of source-code bundle: "
                            "everything belongs in its root directory")
    root = dirs[0]
    root_dirs, root_files = tree.children((root,))
    if "Dockerfile" not in root_files:
        raise InvalidBundle("Missing Dockerfile in source-code bundle")
    if "model" not in root_dirs:
        raise InvalidBundle("Missing model directory in source-code bundle")
    _, model_files = tree.children((root, "model"))
    for required in required_files:
        if required not in model_files:
            raise InvalidBundle(f"Missing file {required} in model directory of source-code bundle")
    return root
