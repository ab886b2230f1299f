"""Id and name formats of kaos (reference §6.2), and their validation."""
import hashlib
import re
import secrets
import uuid
from typing import NamedTuple, Optional

# DNS-1123 label: what Kubernetes accepts as a service name, so a workspace name is usable everywhere.
WORKSPACE_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
WORKSPACE_NAME_MAX = 40  # leaves room for prefixes such as "notebook-<ws>-<user>" within 63 characters

HASH5_RE = re.compile(r"^[0-9a-f]{5}$")
HEX6_RE = re.compile(r"^[0-9a-f]{6}$")
JOB_ID_RE = re.compile(r"^[0-9a-f]{32}$")
MODEL_ID_RE = re.compile(
    r"^(?P<code>[0-9a-f]{5})_(?P<data>[0-9a-f]{5})(?:_(?P<hyper>[0-9a-f]{5}))?:(?P<hex6>[0-9a-f]{6})$")
ENDPOINT_RE = re.compile(r"^serve-(?P<workspace>[a-z0-9]([-a-z0-9]*[a-z0-9])?)-(?P<hex6>[0-9a-f]{6})$")


def workspace_name_problem(name: Optional[str]) -> Optional[str]:
    """Why `name` is not a valid workspace name, or None when it is."""
    if not name:
        return "Invalid workspace name! A name is required"
    if len(name) > WORKSPACE_NAME_MAX:
        return f"Invalid workspace name {name!r}: at most {WORKSPACE_NAME_MAX} characters"
    if not WORKSPACE_NAME_RE.match(name):
        return (f"Invalid workspace name {name!r}: use lowercase letters, digits and '-', "
                "starting and ending with a letter or digit")
    return None


def hash5_of_digest(sha512_hex: str) -> str:
    """The original's 5-character display hash: every 26th character of the SHA-512 hex digest."""
    return sha512_hex[::26][:5]


def hash5(data: bytes) -> str:
    return hash5_of_digest(hashlib.sha512(data).hexdigest())


def manifest_hash(data: bytes) -> str:
    """A manifest's id is the first 5 hex characters of the SHA-256 of its bytes."""
    return hashlib.sha256(data).hexdigest()[:5]


def new_job_id() -> str:
    return uuid.uuid4().hex


def new_hex6() -> str:
    return secrets.token_hex(3)


def bundle_id(root_name: str, hash_: str) -> str:
    """`mnist:1909d`: a bundle's root directory name and its display hash."""
    return f"{root_name}:{hash_}"


class ModelId(NamedTuple):
    code: str
    data: str
    hyper: Optional[str]
    hex6: str

    @property
    def branch(self) -> str:
        return "_".join(part for part in (self.code, self.data, self.hyper) if part)

    def __str__(self) -> str:
        return f"{self.branch}:{self.hex6}"


def parse_model_id(text: str) -> Optional[ModelId]:
    match = MODEL_ID_RE.match(text or "")
    if not match:
        return None
    return ModelId(match["code"], match["data"], match["hyper"], match["hex6"])


def endpoint_name(workspace: str, hex6: str) -> str:
    return f"serve-{workspace}-{hex6}"


def notebook_name(workspace: str, user: str) -> str:
    """`notebook-<ws>-<user>`, the original's name of a workspace's notebook of `user` (a clean_user name). A
    workspace name may hold '-', so a user name that does too would make it ambiguous (workspace `pair` with user
    `x-y`, workspace `pair-x` with user `y`: one notebook, one route, one work directory for both): such a user's
    notebook is named `notebook-<ws>-<user>-<h>`, `<h>` the first 5 hex digits of the sha256 of `<ws>/<user>`."""
    name = f"notebook-{workspace}-{user}"
    if "-" in user:
        name += "-" + hashlib.sha256(f"{workspace}/{user}".encode("utf-8")).hexdigest()[:5]
    return name


def clean_user(user: Optional[str]) -> str:
    """The original strips dots from the self-declared user name and falls back to `default`."""
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "", (user or "").replace(".", ""))
    return cleaned or "default"
