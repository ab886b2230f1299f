"""The per-job runner: `python -m kaos_backend.executors.runner --log L --exit-file E [--line T]... -- CMD...`

It runs CMD in its own session, writes every output line of CMD to the job log as `[timestamp] line`, and
records CMD's exit code in the exit file (atomically) when CMD ends. It does not depend on the backend
process: when the backend dies and comes back, the job goes on and its exit code is still found.
Standard library only, so it starts fast.
"""
import argparse
import os
import signal
import subprocess
import sys
from datetime import datetime


def _stamp(text: str) -> bytes:
    return f"[{datetime.now():%Y-%m-%d %H:%M:%S}] {text}\n".encode("utf-8", errors="replace")


def _write_exit_code(path: str, code: int) -> None:
    temporary = f"{path}.tmp"
    with open(temporary, "w") as handle:
        handle.write(str(code))
    os.replace(temporary, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--log", required=True)
    parser.add_argument("--exit-file", required=True)
    parser.add_argument("--line", action="append", default=[], help="a record to log before CMD starts")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command

    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    with open(args.log, "ab", buffering=0) as log:
        for text in args.line:
            log.write(_stamp(text))
        try:
            child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        except OSError as error:
            log.write(_stamp(f"cannot start {command[0]!r}: {error.strerror}"))
            _write_exit_code(args.exit_file, 127)
            return 127

        def forward(signum, _frame):
            try:
                child.send_signal(signum)
            except ProcessLookupError:
                pass

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        pending = b""
        while True:
            chunk = child.stdout.read1(65536)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                log.write(_stamp(line.rstrip(b"\r").decode("utf-8", errors="replace")))
        if pending:
            log.write(_stamp(pending.rstrip(b"\r").decode("utf-8", errors="replace")))
        code = child.wait()
    _write_exit_code(args.exit_file, code if code >= 0 else 128 - code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
