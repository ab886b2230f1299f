"""What the local executor runs once a workload is staged: the process spec its runner gets, the environment it
passes on, and how a runner is found again (a pid paired with its start time). Standard library only."""
import os
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional

# What of the backend's environment a workload gets: nothing else, since it may hold any secret (the token,
# cloud keys, database passwords). Locale and time zone, where packages come from and how to reach them.
PASSED_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TERM", "http_proxy", "https_proxy",
              "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL",
              "PIP_TRUSTED_HOST", "PIP_FIND_LINKS", "PIP_CERT", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
              "CURL_CA_BUNDLE")
PASSED_ENV_PREFIXES = ("LC_",)
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
RUNNER_ENV_NAMES = ("PATH", "PYTHONPATH", "PYTHONHOME", "LANG", "LC_ALL", "TZ")


@dataclass
class ProcessSpec:
    """A workload once staged (local_staging.py): the process the runner starts. Paths are absolute."""
    job_id: str                    # the workload's name (WorkloadSpec.job_id)
    kind: str
    command: List[str]             # argv, run in `workdir`
    workdir: str
    log: str                       # the log's name (base.job_log_name, base.endpoint_log_name)
    image: Optional[str] = None    # a virtualenv directory
    env: Dict[str, str] = field(default_factory=dict)
    preamble: List[str] = field(default_factory=list)  # log records written before the command runs
    inputs: List[str] = field(default_factory=list)    # paths it reads (data, hyperparameters): read-only
    outputs: List[str] = field(default_factory=list)   # paths it writes besides `workdir`
    hints: List[str] = field(default_factory=list)     # log records about its inputs, just before it runs
    cpu: Optional[float] = None
    memory: Optional[str] = None


def stat_fields(pid: int) -> Optional[List[str]]:
    """The fields of /proc/<pid>/stat (index 2 the state, 21 the start time in ticks), or None when gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            text = handle.read()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: split after its closing parenthesis.
    return [text[:text.index(" ")]] + ["comm"] + text[text.rindex(")") + 2:].split()


def start_ticks(pid: int) -> Optional[int]:
    fields = stat_fields(pid)
    return int(fields[21]) if fields else None


def is_running(pid: int, ticks: Optional[int]) -> bool:
    """The process `pid` started at `ticks` runs (not a zombie, not another process that got its pid)."""
    fields = stat_fields(pid)
    return bool(fields) and fields[2] != "Z" and int(fields[21]) == ticks


def job_environment(extra: Dict[str, str], image: Optional[str]) -> Dict[str, str]:
    """A workload's environment: the PASSED_ENV part of the backend's, the image's virtualenv first on PATH, then
    `extra` (the job's own variables)."""
    env = {key: value for key, value in os.environ.items()
           if key in PASSED_ENV or key.startswith(PASSED_ENV_PREFIXES)}
    if image:
        env["VIRTUAL_ENV"] = image
        env["PATH"] = f"{image}/bin{os.pathsep}{env.get('PATH', os.defpath)}"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def python_paths() -> List[str]:
    """What running this interpreter (and virtualenvs made from it) needs to read."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             os.path.dirname(os.path.realpath(sys.executable))}
    return sorted(path for path in paths if path and path != "/")
