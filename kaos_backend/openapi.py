"""The API's OpenAPI 3.1 description: `openapi.yaml` beside this module (the one place it is written), loaded
once per process with the running backend's version."""
import copy
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict

DESCRIPTION_FILE = Path(__file__).with_name("openapi.yaml")


@lru_cache(maxsize=1)
def _loaded() -> Dict[str, Any]:
    import yaml

    from kaos_backend import __version__

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(DESCRIPTION_FILE, encoding="utf-8") as handle:
        description = yaml.load(handle, Loader=loader)
    description["info"]["version"] = __version__
    return description


def openapi_description() -> Dict[str, Any]:
    """The description as a JSON-ready dict (a copy: callers may change it). Raises OSError when the file is
    missing from the installation and yaml.YAMLError when it does not parse."""
    return copy.deepcopy(_loaded())
