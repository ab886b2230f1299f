"""Every reader of a job's or an endpoint's log goes through the executor contract (`logs`, `open_log`,
`append_log` of an executor bound to the log): no module of the backend outside kaos_backend/executors/ uses
the log files' own readers and writers (kaos_backend/logs.py)."""
import ast
from pathlib import Path

import kaos_backend

PACKAGE = Path(kaos_backend.__file__).parent
LOG_FILE_ACCESS = {"JobLog", "LogFileReader", "records"}


def _log_file_access(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module == "kaos_backend.logs":
            yield from (alias.name for alias in node.names if alias.name in LOG_FILE_ACCESS)
        elif isinstance(node, ast.Attribute) and node.attr == "log_path":
            yield "log_path"


def test_no_module_outside_the_executors_opens_a_log_file():
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] == "executors" or relative == Path("logs.py"):
            continue
        found = sorted(set(_log_file_access(path)))
        if found:
            offenders[str(relative)] = found
    assert offenders == {}
