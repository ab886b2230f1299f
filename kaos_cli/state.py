"""Local state of one kaos project: `./.kaos/config` (contexts, user, workspace) and the `-i/--ind` caches.

The state directory is `./.kaos` of the current working directory, or `$KAOS_STATE_DIR`. The config is an INI
file::

    [default]            user = <$USER or kaos>
    [contexts]           environments = LOCAL,remote
    [active]             environment = LOCAL          (empty when none)
    [context:<name>]     url, token, kind (local|remote|kubernetes); LOCAL and DOCKER add executor, data_dir, pid,
                         port, log; KUBERNETES and MINIKUBE add kube_context, namespace, kubeconfig, target and
                         objects (what the deploys made: kaos_cli/kube_platform.py)
    [workspace]          name = <current workspace>   (empty when none)

Every write is atomic (temporary file + `os.replace`) and the file is private (mode 0600): it holds tokens.
"""
import configparser
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

from kaos_cli.errors import IndexProblem, KaosError

CONFIG_NAME = "config"
FILE_MODE = 0o600
DIR_MODE = 0o700

# cache kind -> the command whose `list` writes it (used in the index messages)
CACHE_COMMANDS = {
    "workspace": "workspace",
    "train": "train",
    "build-train": "train",
    "serve": "serve",
    "build-serve": "serve",
    "notebook": "notebook",
    "build-notebook": "notebook",
    "backend": "build",
    "template": "template",
}
WORKSPACE_CACHES = ("workspace", "train", "build-train", "serve", "build-serve", "notebook", "build-notebook")


def state_dir() -> Path:
    """`$KAOS_STATE_DIR`, else `.kaos` in the current directory (resolved on every call, not at import)."""
    override = os.environ.get("KAOS_STATE_DIR")
    return Path(override) if override else Path.cwd() / ".kaos"


def config_path() -> Path:
    return state_dir() / CONFIG_NAME


def ensure_state_dir() -> Path:
    directory = state_dir()
    directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    return directory


def write_private(path: Path, text: str) -> None:
    """Atomically replace `path` with `text`, mode 0600."""
    path = Path(path)
    path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=str(path.parent), prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, FILE_MODE)
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except OSError:
            pass
        raise


def parse_json(text) -> Any:
    """`json.loads`, except that a document nested too deeply for the parser raises ValueError ("nested too
    deeply"), as every other malformed JSON does, instead of RecursionError."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def default_user() -> str:
    return os.environ.get("USER") or "kaos"


class MalformedConfig(KaosError):
    """`.kaos/config` is not an INI file of UTF-8 text; `kaos init -f` replaces it."""


class Config:
    """The `.kaos/config` file; reading a missing section or option never raises. `read=False`: an empty config
    at `path`, whatever the file holds (what `kaos init -f` writes over a malformed one)."""

    def __init__(self, path: Optional[Path] = None, read: bool = True):
        self.path = Path(path) if path else config_path()
        self._parser = configparser.ConfigParser(interpolation=None)
        if read and self.path.exists():
            try:
                self._parser.read(self.path, encoding="utf-8")
            except (configparser.Error, UnicodeDecodeError) as exc:
                problem = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else str(exc).splitlines()[0]
                raise MalformedConfig(f"The kaos config {self.path} is malformed ({problem}) - run kaos init -f")

    @classmethod
    def load(cls) -> "Config":
        return cls()

    @property
    def exists(self) -> bool:
        return self.path.exists()

    # -- low level -------------------------------------------------------------------------------------------
    def get(self, section: str, option: str, default: Optional[str] = None) -> Optional[str]:
        value = self._parser.get(section, option, fallback=None)
        return default if value is None or value == "" else value

    def set(self, section: str, option: str, value: Optional[Any]) -> None:
        if not self._parser.has_section(section):
            self._parser.add_section(section)
        self._parser.set(section, option, "" if value is None else str(value))

    def save(self) -> None:
        import io

        buffer = io.StringIO()
        self._parser.write(buffer)
        write_private(self.path, buffer.getvalue())

    # -- user ------------------------------------------------------------------------------------------------
    @property
    def user(self) -> str:
        return self.get("default", "user") or default_user()

    @property
    def has_user(self) -> bool:
        return self.get("default", "user") is not None

    def set_user(self, user: str) -> None:
        self.set("default", "user", user)

    # -- contexts --------------------------------------------------------------------------------------------
    @property
    def contexts(self) -> List[str]:
        raw = self.get("contexts", "environments", "") or ""
        return [name.strip() for name in raw.split(",") if name.strip()]

    def _set_contexts(self, names: List[str]) -> None:
        self.set("contexts", "environments", ",".join(names))

    @property
    def active(self) -> Optional[str]:
        return self.get("active", "environment")

    def set_active(self, name: Optional[str]) -> None:
        self.set("active", "environment", name)

    def context(self, name: Optional[str]) -> Optional[Dict[str, str]]:
        """The context's fields, or None when the context has no section."""
        if not name:
            return None
        section = f"context:{name}"
        if not self._parser.has_section(section):
            return None
        return dict(self._parser.items(section))

    def set_context(self, name: str, **fields: Any) -> None:
        """Replace context `name` with `fields` and list it in `[contexts]`."""
        section = f"context:{name}"
        if self._parser.has_section(section):
            self._parser.remove_section(section)
        self._parser.add_section(section)
        for key, value in fields.items():
            self.set(section, key, value)
        if name not in self.contexts:
            self._set_contexts(self.contexts + [name])

    def remove_context(self, name: str) -> None:
        self._parser.remove_section(f"context:{name}")
        self._set_contexts([other for other in self.contexts if other != name])
        if self.active == name:
            self.set_active(None)

    # -- workspace -------------------------------------------------------------------------------------------
    @property
    def workspace(self) -> Optional[str]:
        return self.get("workspace", "name")

    def set_workspace(self, name: Optional[str]) -> None:
        self.set("workspace", "name", name)


# -- list caches behind -i/--ind -------------------------------------------------------------------------------
def cache_path(kind: str) -> Path:
    if kind not in CACHE_COMMANDS:
        raise ValueError(f"unknown cache {kind!r}")
    return state_dir() / f".{kind}.cache"


def write_cache(kind: str, items: List[Any]) -> None:
    write_private(cache_path(kind), json.dumps(list(items)))


def read_cache(kind: str) -> Optional[List[Any]]:
    path = cache_path(kind)
    try:
        items = parse_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return items if isinstance(items, list) else None


def delete_caches(kinds=WORKSPACE_CACHES) -> None:
    for kind in kinds:
        try:
            cache_path(kind).unlink()
        except FileNotFoundError:
            pass


def check_index(index: int, count: int, command: str) -> None:
    """Valid indices are 0 <= index < count, else the original's message."""
    if not 0 <= index < count:
        raise IndexProblem(f"Index {index} does not exist... Run `kaos {command} list` again")


def resolve_index(kind: str, index: int) -> Any:
    """The entry `index` of the last `kaos <cmd> list` output."""
    command = CACHE_COMMANDS[kind]
    items = read_cache(kind)
    if items is None:
        raise IndexProblem(f"Index not available until running `kaos {command} list`")
    check_index(index, len(items), command)
    return items[index]
