"""One container of a pod as the fake kubelet runs it: its environment and command line composed as Kubernetes
composes them, and one run of it as a local process (through launch.py) whose output goes to the pod log.

Environment: the image's, then `envFrom` (Secrets, ConfigMaps), then `env` in order (`value` with `$(VAR)`
references to the variables before it, `valueFrom` secretKeyRef / configMapKeyRef / fieldRef). Command line:
`command` (else the image's entrypoint) + `args` (else the image's cmd, only when there is no command), with
`$(VAR)` expanded from the environment (`$$` is a literal `$`), then the image's rewrite.

Exit codes as the runtime reports them: a process killed by signal N exited 128+N (137 for SIGKILL).
"""
import base64
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, List, Optional

from .images import Image
from .kinds import CONFIGMAPS, SECRETS
from .podlogs import Run

LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "launch.py")
_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class ConfigError(Exception):
    """What keeps a container from being created (CreateContainerConfigError): a missing Secret or key."""


def expand(text: str, env: Dict[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: a defined variable's value, an undefined reference left as it is."""
    return _REFERENCE.sub(lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), text)


def _key(store, resource, namespace: str, ref: dict) -> Optional[str]:
    obj = store.find(resource, namespace, ref["name"])
    label = "secret" if resource == SECRETS else "configmap"
    if obj is None:
        if ref.get("optional"):
            return None
        raise ConfigError(f'{label} "{ref["name"]}" not found')
    data = obj.get("data") or {}
    if ref.get("key") is not None:
        if ref["key"] not in data:
            if ref.get("optional"):
                return None
            raise ConfigError(f'couldn\'t find key {ref["key"]} in {label.capitalize()} {namespace}/{ref["name"]}')
        value = data[ref["key"]]
        return base64.b64decode(value).decode() if resource == SECRETS else value
    return {k: (base64.b64decode(v).decode() if resource == SECRETS else v) for k, v in data.items()}


def _field(pod: dict, path: str) -> str:
    match = re.match(r"^metadata\.(labels|annotations)\['([^']+)'\]$", path)
    if match:
        return (pod["metadata"].get(match.group(1)) or {}).get(match.group(2), "")
    value = {"metadata.name": pod["metadata"]["name"], "metadata.namespace": pod["metadata"]["namespace"],
             "metadata.uid": pod["metadata"]["uid"], "spec.nodeName": pod["spec"].get("nodeName"),
             "spec.serviceAccountName": pod["spec"].get("serviceAccountName"),
             "status.podIP": "127.0.0.1", "status.hostIP": "127.0.0.1"}.get(path)
    if value is None:
        raise ConfigError(f"unsupported fieldRef fieldPath: {path}")
    return value


def environment(store, pod: dict, container: dict, image: Image, published: Dict[int, int]) -> Dict[str, str]:
    """The container's environment. Raises ConfigError. A variable whose value is one of the pod's declared
    container ports becomes the local port the kubelet published it on (`published`: the fake's pod network)."""
    namespace = pod["metadata"]["namespace"]
    env = dict(image.env)
    for source in container.get("envFrom") or []:
        for field, resource in (("secretRef", SECRETS), ("configMapRef", CONFIGMAPS)):
            if source.get(field):
                values = _key(store, resource, namespace, dict(source[field], key=None)) or {}
                env.update({source.get("prefix", "") + k: _published(v, published) for k, v in values.items()})
    for variable in container.get("env") or []:
        if "valueFrom" in variable:
            source = variable["valueFrom"]
            if "secretKeyRef" in source:
                value = _key(store, SECRETS, namespace, source["secretKeyRef"])
            elif "configMapKeyRef" in source:
                value = _key(store, CONFIGMAPS, namespace, source["configMapKeyRef"])
            elif "fieldRef" in source:
                value = _field(pod, source["fieldRef"]["fieldPath"])
            else:
                raise ConfigError(f"unsupported valueFrom for {variable['name']}: {sorted(source)}")
            if value is None:
                continue
        else:
            value = expand(variable.get("value", ""), env)
        env[variable["name"]] = _published(value, published)
    return env


def _published(value: str, published: Dict[int, int]) -> str:
    """A declared container port's number becomes the local port it was published on (in `env` and `envFrom`
    alike: the backend's settings come from a ConfigMap)."""
    return str(published[int(value)]) if value.isdigit() and int(value) in published else value


def command_line(container: dict, image: Image, env: Dict[str, str]) -> List[str]:
    command = container.get("command")
    args = container.get("args")
    if command:
        argv = list(command) + list(args or [])
    else:
        argv = list(image.entrypoint) + list(args if args is not None else image.cmd)
    return image.rewrite([expand(part, env) for part in argv])


class ContainerProcess:
    """One run of a container: started at once, watched with `poll`, stopped with `signal`."""

    def __init__(self, argv: List[str], env: Dict[str, str], cwd: str, mounts: list, log: Run,
                 ended: Callable[[], None] = lambda: None):
        """`ended()` is called (from a thread of its own) once the process exited: the kubelet wakes up."""
        self.log = log
        self.started_at = time.time()
        self.finished_at: Optional[float] = None
        self.exit_code: Optional[int] = None
        self.start_error: Optional[str] = None
        self.oom_killed = False
        read_end, write_end = os.pipe()
        config = {"argv": argv, "env": env, "cwd": cwd, "mounts": mounts, "error_fd": write_end}
        self.process = subprocess.Popen([sys.executable, LAUNCHER, json.dumps(config)], stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                                        pass_fds=(write_end,), env={"PATH": env.get("PATH", "")})
        os.close(write_end)
        self.errors = os.fdopen(read_end, "rb")
        self.reader = threading.Thread(target=self._copy_output, name=f"kubefake-log-{self.process.pid}",
                                       daemon=True)
        self.reader.start()
        threading.Thread(target=lambda: (self.process.wait(), ended()), name=f"kubefake-wait-{self.process.pid}",
                         daemon=True).start()

    def _copy_output(self) -> None:
        for chunk in iter(lambda: self.process.stdout.read1(65536), b""):
            self.log.write(chunk)
        self.process.stdout.close()

    def poll(self) -> Optional[int]:
        """None while it runs, else its exit code (128+N when killed by signal N)."""
        if self.exit_code is not None:
            return self.exit_code
        code = self.process.poll()
        if code is None:
            return None
        self.signal(signal.SIGKILL)  # the container ends with its first process: so do the others
        self.reader.join(timeout=5)
        self.log.close()
        message = self.errors.read().decode(errors="replace")
        self.errors.close()
        if message:
            self.start_error = message
        self.exit_code = 128 - code if code < 0 else code
        self.finished_at = time.time()
        return self.exit_code

    def signal(self, number: int) -> None:
        try:
            os.killpg(self.process.pid, number)
        except (ProcessLookupError, PermissionError):
            pass

    def running(self) -> bool:
        return self.poll() is None
