"""The tokens of the notebooks deployed from this project directory: `./.kaos/notebook-tokens.json` (mode 0600),
`{"<backend url> <notebook name>": "<token>"}`. The backend keeps only a token's SHA-256, so the token is shown
again (`kaos notebook list --show-token`) only where its deploy saved it: to the user who deployed it."""
import hashlib
import json
from typing import Dict, Optional

from kaos_cli.state import parse_json, state_dir, write_private

FILE_NAME = "notebook-tokens.json"


def _load() -> Dict[str, str]:
    try:
        tokens = parse_json((state_dir() / FILE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {key: value for key, value in tokens.items() if isinstance(value, str)} if isinstance(tokens, dict) else {}


def fingerprint(token: str) -> str:
    """What the backend lists beside a notebook (`token_fingerprint`): the first 16 hex of the token's SHA-256."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def remember(url: str, name: str, token: str) -> None:
    tokens = _load()
    tokens[f"{url} {name}"] = token
    write_private(state_dir() / FILE_NAME, json.dumps(tokens, indent=1, sort_keys=True))


def forget(url: str, name: str) -> None:
    tokens = _load()
    if tokens.pop(f"{url} {name}", None) is not None:
        write_private(state_dir() / FILE_NAME, json.dumps(tokens, indent=1, sort_keys=True))


def token_of(url: str, name: str, token_fingerprint: Optional[str]) -> Optional[str]:
    """The saved token of the notebook `name` of the backend at `url`, when it is the notebook's current one (its
    fingerprint matches); None otherwise."""
    token = _load().get(f"{url} {name}")
    return token if token and token_fingerprint and fingerprint(token) == token_fingerprint else None
