"""Executors run builds, trainings, endpoints and notebooks: `local` (processes + virtualenvs), `docker`,
`kubernetes`. The contract is `base.Executor`; `make_executor(config)` gives an idle one of the configured kind."""
from kaos_backend.executors.base import Executor


def make_executor(config) -> Executor:
    if config.executor == "local":
        from kaos_backend.executors.local import LocalExecutor
        from kaos_backend.wakeup import socket_name
        return LocalExecutor(config.data_dir, containment_mode=config.containment,
                             workload_user=config.workload_user, notify=socket_name(config.data_dir),
                             max_log_bytes=config.max_log_mb * 1024 * 1024)
    raise NotImplementedError(f"the {config.executor} executor is not available in this version")
