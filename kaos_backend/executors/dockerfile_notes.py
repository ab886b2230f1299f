"""What of a source bundle's Dockerfile the LOCAL platform does not apply, said in the build's log.

On LOCAL an image is a virtualenv of the bundle's requirements files (executors/venv_builder.py) and a workload
runs in a copy of its model/ with this machine's Python: the Dockerfile's FROM, ARG, WORKDIR, COPY, EXPOSE, CMD,
the templates' virtualenv and `pip install -r` steps and their usual ENV settings have their LOCAL equivalents;
any other RUN (`apt-get install ...`) or ENV (`MY_SETTING=42`) has none, and a training that needs it fails or
behaves differently with no word of why. `not_applied` names those instructions (the Dockerfile read with
dockerfile-parse, as executors/docker_bases.py reads it) so that the build can say so.
"""
import json
import re
from pathlib import Path
from typing import List

# ENV settings whose effect LOCAL has anyway (the runner streams output; the virtualenv is first on PATH; apt is
# not run)
HANDLED_ENV = frozenset({"PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PIP_DISABLE_PIP_VERSION_CHECK",
                         "PIP_NO_CACHE_DIR", "PATH", "PORT", "VIRTUAL_ENV", "LANG", "LC_ALL", "DEBIAN_FRONTEND",
                         "JUPYTER_CONFIG_DIR"})  # (a notebook's: local_staging.py sets its own)
# the instructions looked at: the others (FROM, ARG, WORKDIR, COPY, CMD, ...) have LOCAL equivalents or no effect
# there, and a name Docker does not know is no instruction (dockerfile-parse reads a heredoc's body, `RUN <<EOF`,
# as lines of their own)
LOOKED_AT = frozenset({"RUN", "ENV", "ONBUILD"})
# the shell steps of a RUN that LOCAL's build does itself: the virtualenv, installs of requirements files, chmod
_HANDLED_STEP = re.compile(r"""^(
      python3?\ -m\ venv\ \S+
    | (python3?\ -m\ )?pip3?\ install(\ --?[\w-]+(=\S+)?)*(\ -r\ \S+\.txt)+(\ --?[\w-]+(=\S+)?)*
    | chmod\ \+x(\ \S+)+
    | if\ \[\ -f\ \S+\ \]
    | fi
)$""", re.VERBOSE)
_STEP_SEPARATORS = re.compile(r"\s*(?:&&|\|\||;)\s*")
_THEN = re.compile(r"^(?:then|else)\s+")
MAX_SHOWN = 160  # characters of one instruction in the note


def not_applied(dockerfile: Path) -> List[str]:
    """The Dockerfile's instructions LOCAL does not apply, as written (`RUN apt-get install -y libgomp1`, `ENV
    MY_SETTING=42`, long ones cut), in order; [] when it has none or cannot be read or parsed (the build itself
    does not need it)."""
    from dockerfile_parse import DockerfileParser
    from dockerfile_parse.util import extract_key_values

    try:
        with open(dockerfile, "rb") as handle:
            structure = DockerfileParser(fileobj=handle).structure
    except (OSError, ValueError, UnicodeDecodeError):
        return []
    found = []
    for instruction in structure:
        kind, value = instruction["instruction"].upper(), " ".join(instruction["value"].split())
        if kind not in LOOKED_AT:
            continue
        if kind == "ENV":
            try:
                keys = [key for key, _ in extract_key_values(False, {}, {}, value)]
            except (ValueError, IndexError):
                keys = [None]
            if all(key in HANDLED_ENV for key in keys):
                continue
        if kind == "RUN" and all(_HANDLED_STEP.match(_THEN.sub("", step))
                                 for step in _STEP_SEPARATORS.split(_shell_form(value)) if step):
            continue
        shown = f"{kind} {value}"
        found.append(shown if len(shown) <= MAX_SHOWN else shown[:MAX_SHOWN - 3] + "...")
    return found


def _shell_form(value: str) -> str:
    """A RUN's command as one line: its exec form (`["chmod", "+x", "train"]`) joined with spaces."""
    if value.startswith("["):
        try:
            words = json.loads(value)
        except ValueError:
            return value
        if isinstance(words, list) and all(isinstance(word, str) for word in words):
            return " ".join(words)
    return value


def note(dockerfile: Path) -> List[str]:
    """The build log's line about `not_applied`, or no line."""
    skipped = not_applied(dockerfile)
    if not skipped:
        return []
    return [f"kaos: LOCAL builds a virtualenv of the bundle's requirements files; these instructions of its "
            f"Dockerfile are not applied here (a DOCKER or KUBERNETES platform runs them): {'; '.join(skipped)}"]
