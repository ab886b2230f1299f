"""Executors run builds, trainings, endpoints and notebooks: `local` (processes + virtualenvs), `docker`,
`kubernetes`. The contract is `base.Executor`; `make_executor(config)` (registry.py) gives an idle one of the
configured kind."""
from kaos_backend.executors.base import Executor
from kaos_backend.executors.registry import executor_class, log_of, make_executor, register

__all__ = ["Executor", "executor_class", "log_of", "make_executor", "register"]
