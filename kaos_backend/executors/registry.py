"""Executors by kind: `make_executor(config)` gives an idle executor of the kind `config.executor` names
(`KAOS_EXECUTOR`). Each executor module registers its factory under its kind when it is imported; the modules of
the kinds kaos ships are imported on first use, so an SDK one kind needs (docker, kubernetes) loads only where
that kind runs. Another kind (a plugin, a test's) registers itself with `register` before it is used."""
import importlib
from typing import Callable, Dict, List, Type

from kaos_backend.executors.base import Executor

# kind -> the module that registers it on import
BUILT_IN = {"local": "kaos_backend.executors.local", "docker": "kaos_backend.executors.docker",
            "kubernetes": "kaos_backend.executors.kubernetes"}

Factory = Callable[[object], Executor]   # config (kaos_backend.config.Config) -> an idle executor
_factories: Dict[str, Factory] = {}
_classes: Dict[str, Type[Executor]] = {}


class ExecutorNotAvailable(LookupError):
    """No executor of that kind is registered (KAOS_EXECUTOR names one this kaos does not have)."""


def register(kind: str, executor_class: Type[Executor], factory: Factory) -> None:
    """Make `kind` available: `factory(config)` builds an idle `executor_class` from the backend's config."""
    _factories[kind] = factory
    _classes[kind] = executor_class


def kinds() -> List[str]:
    """The kinds that can run here, sorted (their modules imported)."""
    for kind in BUILT_IN:
        _load(kind)
    return sorted(_factories)


def _load(kind: str) -> None:
    if kind not in _factories and kind in BUILT_IN:
        importlib.import_module(BUILT_IN[kind])
    if kind not in _factories:
        raise ExecutorNotAvailable(f"the {kind} executor is not available in this version")


def executor_class(kind: str) -> Type[Executor]:
    """The class of `kind`'s executors (for what the kind can do, before any workload: e.g. `limits_warnings`).
    Raises ExecutorNotAvailable."""
    _load(kind)
    return _classes[kind]


def make_executor(config) -> Executor:
    """An idle executor of the configured kind (`config.executor`). Raises ExecutorNotAvailable."""
    _load(config.executor)
    return _factories[config.executor](config)


def log_of(config, log: str) -> Executor:
    """An idle executor of the configured kind bound to the log named `log` (base.job_log_name,
    base.endpoint_log_name): how the platform reads (`logs`, `open_log`) and adds to (`append_log`) a job's or an
    endpoint's log. Raises ExecutorNotAvailable, and ValueError for a name that is not a log's."""
    return make_executor(config).bind_log(log)
