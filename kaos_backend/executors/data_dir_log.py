"""Where every executor keeps a workload's log: the platform's own file `<data_dir>/<log name>/log`
(`jobs/<job id>/log`, `endpoints/<name>/log`, `notebooks/<name>/log`), written by the workload's runner, watcher or
follower, so that it outlives the process, container or pod that wrote it and the API reads it the same way for
every executor (kaos_backend.logs)."""
from pathlib import Path
from typing import Optional

from kaos_backend.executors.base import check_log_name
from kaos_backend.logs import JobLog, LogFileReader


class DataDirLog:
    """The log part of an executor with `data_dir` (a Path) and `log_name` (Executor.log_name: the log bound by
    bind_log, start or load_state)."""
    data_dir: Path
    log_name: Optional[str]

    def _log_file(self) -> Path:
        """The bound log's file. ValueError when no log is bound."""
        if self.log_name is None:
            raise ValueError("no log is bound to this executor (bind_log, start or load_state first)")
        return self.data_dir / check_log_name(self.log_name) / "log"

    def open_log(self) -> LogFileReader:
        return LogFileReader(self._log_file())

    def append_log(self, *texts: str) -> None:
        JobLog(self._log_file()).append(*texts)
