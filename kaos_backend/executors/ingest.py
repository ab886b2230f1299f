"""Ingest a data manifest: `python ingest.py --manifest M --out DIR [--workers 3] [--timeout 60] [--retries 2]`

A manifest is a text file of one JSON object per line, `{"url": "http(s)://…", "path": "relative/path"}`.
Every URL is downloaded to `DIR/<path>`, a few at a time. All files go to a temporary directory beside DIR,
which is renamed to DIR only once every file has arrived: DIR either holds the whole data set or does not exist.
One output line per file ("downloaded <path> (<n> bytes)"); when a file cannot be fetched (after the retries)
a line names its URL and the exit code is 1. Standard library only, and run by path (like runner.py), so it
neither imports nor depends on the backend.
"""
import argparse
import http.client
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path
from typing import List, NamedTuple, Optional
from urllib.parse import urlsplit

CHUNK = 1 << 16
USER_AGENT = "kaos-ingest/1"
RETRY_DELAYS = (1.0, 2.0, 4.0)  # seconds before the 2nd, 3rd, … attempt
_TRANSIENT_HTTP = (408, 425, 429)
_print_lock = threading.Lock()


def say(text: str) -> None:
    """One whole line on stdout (the runner stamps and logs it); safe from several threads."""
    with _print_lock:
        sys.stdout.write(text.replace("\n", " ") + "\n")
        sys.stdout.flush()


class Entry(NamedTuple):
    url: str
    path: str  # normalized: components joined by "/", no "." or empty ones


class ManifestError(Exception):
    pass


class DownloadError(Exception):
    def __init__(self, entry: Entry, reason: str):
        super().__init__(f"{entry.url}: {reason}")
        self.entry = entry
        self.reason = reason


class Stopped(Exception):
    """The ingestion is ending (another file failed, or a signal came): stop this download."""


class Interrupted(BaseException):
    """SIGTERM/SIGINT: leave nothing behind and exit."""


# -- the manifest -------------------------------------------------------------------------------------------------
def path_problem(path: str) -> str:
    """Why `path` is not a safe relative file path, or "" when it is (the backend checks uploads with it too)."""
    if not path.strip():
        return "it is empty"
    if "\\" in path or "\x00" in path:
        return "it holds a backslash or a NUL character"
    if path.startswith("/") or (len(path) > 1 and path[1] == ":" and path[0].isalpha()):
        return "it is absolute"
    parts = path.split("/")
    if ".." in parts:
        return "it has a '..' component"
    if path.endswith("/") or all(part in ("", ".") for part in parts):
        return "it names a directory, not a file"
    return ""


def read_manifest(path: str) -> List[Entry]:
    entries, seen = [], {}
    with open(path, "rb") as manifest:
        for number, raw in enumerate(manifest, start=1):
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                raise ManifestError(f"line {number} is not UTF-8 text") from None
            if not line:
                continue
            try:
                item = json.loads(line)
            except (ValueError, RecursionError):
                raise ManifestError(f"line {number} is not valid JSON") from None
            if not isinstance(item, dict):
                raise ManifestError(f"line {number} is not a JSON object")
            url, target = item.get("url"), item.get("path")
            if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
                raise ManifestError(f"line {number}: 'url' must be an http or https URL, got {url!r}")
            if not isinstance(target, str):
                raise ManifestError(f"line {number}: 'path' must be a string, got {target!r}")
            problem = path_problem(target)
            if problem:
                raise ManifestError(f"line {number}: path {target!r} is not a safe relative path: {problem}")
            normalized = "/".join(part for part in target.split("/") if part not in ("", "."))
            if normalized in seen:
                raise ManifestError(f"line {number}: path {target!r} is already used on line {seen[normalized]}")
            seen[normalized] = number
            entries.append(Entry(url, normalized))
    if not entries:
        raise ManifestError("must hold at least one line")
    files = set(seen)
    for path in files:  # `a` as a file and `a/b` would need `a` to be a directory too
        parts = path.split("/")
        for end in range(1, len(parts)):
            if "/".join(parts[:end]) in files:
                raise ManifestError(f"path {'/'.join(parts[:end])!r} is a file, so {path!r} cannot be under it")
    return entries


def target_of(root: Path, relative: str) -> Path:
    """`root/relative`, re-checked: never outside `root`, whatever the path or the links on the way."""
    problem = path_problem(relative)
    if problem:
        raise ManifestError(f"path {relative!r} is not a safe relative path: {problem}")
    target = root.joinpath(*[part for part in relative.split("/") if part not in ("", ".")])
    real_root, real_target = os.path.realpath(root), os.path.realpath(target)
    if real_target == real_root or os.path.commonpath([real_root, real_target]) != real_root:
        raise ManifestError(f"path {relative!r} leads outside the data directory")
    return target


# -- downloading --------------------------------------------------------------------------------------------------
class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urlsplit(newurl).scheme not in ("http", "https"):
            raise urllib.error.HTTPError(newurl, code, f"redirect to a non-HTTP URL {newurl!r} refused",
                                         headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class _Transient(Exception):
    pass


class Downloads:
    """Downloads into one staging directory, `workers` at a time, that can be abandoned at any moment: after
    `abandon()` no worker creates anything in it any more (in-flight transfers are left to die with the process)."""

    def __init__(self, root: Path, workers: int, timeout: float, retries: int):
        self.root = root
        self.timeout = timeout
        self.retries = retries
        self.stop = threading.Event()
        self._guard = threading.Lock()  # held while a worker creates a directory or a file, and to abandon
        self._opener = urllib.request.build_opener(_HttpOnlyRedirects())
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="ingest")

    def run(self, entries: List[Entry]) -> int:
        """Every entry; the total bytes. Raises the DownloadError of the first entry that cannot be fetched."""
        total = 0
        pending = {self._pool.submit(self.fetch, entry): entry for entry in entries}
        while pending:
            done, _ = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                entry = pending.pop(future)
                size = future.result()
                total += size
                say(f"downloaded {entry.path} ({size} bytes)")
        self._pool.shutdown(wait=True)
        return total

    def abandon(self) -> None:
        """Stop every download and delete the staging directory (the downloads still in flight end at their
        next chunk or with the process)."""
        with self._guard:
            self.stop.set()
            shutil.rmtree(self.root, ignore_errors=True)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _create(self, relative: str):
        with self._guard:
            if self.stop.is_set():
                raise Stopped()
            target = target_of(self.root, relative)
            target.parent.mkdir(parents=True, exist_ok=True)
            return open(target, "wb")

    def fetch(self, entry: Entry) -> int:
        """Download one entry to `root/<path>`; the number of bytes, or DownloadError naming why not."""
        for attempt in range(self.retries + 1):
            if self.stop.is_set():
                raise Stopped()
            try:
                return self._download_once(entry)
            except _Transient as error:
                if attempt == self.retries:
                    tries = f" (after {self.retries + 1} attempts)" if self.retries else ""
                    raise DownloadError(entry, f"{error}{tries}") from None
                delay = RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)]
                say(f"retrying {entry.url} in {delay:g}s (attempt {attempt + 2} of {self.retries + 1}): {error}")
                if self.stop.wait(delay):
                    raise Stopped()
        raise AssertionError("unreachable")

    def _download_once(self, entry: Entry) -> int:
        request = urllib.request.Request(entry.url, headers={"User-Agent": USER_AGENT})
        try:
            response = self._opener.open(request, timeout=self.timeout)
        except urllib.error.HTTPError as error:
            error.close()
            reason = f"HTTP {error.code} {error.reason}".strip()
            if error.code >= 500 or error.code in _TRANSIENT_HTTP:
                raise _Transient(reason) from None
            raise DownloadError(entry, reason) from None  # 404 and the like: retrying will not help
        except urllib.error.URLError as error:
            raise _Transient(str(error.reason)) from None
        except (OSError, http.client.HTTPException) as error:
            raise _Transient(str(error) or type(error).__name__) from None
        size = 0
        with response:
            expected = response.headers.get("Content-Length")
            try:
                out = self._create(entry.path)
            except (ManifestError, OSError) as error:
                raise DownloadError(entry, f"cannot write {entry.path!r}: {error}") from None
            with out:
                while True:
                    if self.stop.is_set():
                        raise Stopped()
                    try:
                        chunk = response.read(CHUNK)
                    except (OSError, http.client.HTTPException) as error:
                        raise _Transient(f"the transfer broke off after {size} bytes: "
                                         f"{error or type(error).__name__}") from None
                    if not chunk:
                        break
                    try:
                        out.write(chunk)
                    except OSError as error:  # a full disk is not worth a retry
                        raise DownloadError(entry, f"cannot write {entry.path!r}: {error}") from None
                    size += len(chunk)
        if expected and expected.strip().isdigit() and int(expected) != size:
            raise _Transient(f"got {size} of {expected} bytes")
        return size


# -- main ---------------------------------------------------------------------------------------------------------
def _files(count: int) -> str:
    return f"{count} file" if count == 1 else f"{count} files"


_interrupted = []


def _interrupt(signum, _frame):
    """The first SIGTERM/SIGINT interrupts; more (the runner forwards what the executor also sends) are ignored
    so that they cannot cut the clean-up short."""
    if not _interrupted:
        _interrupted.append(signum)
        raise Interrupted(signum)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Download the files of a kaos data manifest.")
    parser.add_argument("--manifest", required=True, help="the manifest file")
    parser.add_argument("--out", required=True, help="the directory to create with the downloaded files")
    parser.add_argument("--workers", type=int, default=3, help="downloads at a time")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for a server, per request")
    parser.add_argument("--retries", type=int, default=2, help="further attempts after a transient failure")
    args = parser.parse_args(argv)
    out = Path(os.path.abspath(args.out))

    try:
        entries = read_manifest(args.manifest)
    except (ManifestError, OSError) as error:
        say(f"ingestion failed: the manifest {args.manifest} is invalid: {error}")
        return 1
    if out.is_dir():
        say(f"the files of this manifest are already ingested in {out}")
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    downloads = Downloads(staging, args.workers, args.timeout, max(0, args.retries))
    started = time.monotonic()
    try:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, _interrupt)
        say(f"ingesting {_files(len(entries))}, {max(1, args.workers)} at a time, into {out}")
        total = downloads.run(entries)
        try:
            os.rename(staging, out)  # all or nothing: DIR appears complete, or not at all
        except OSError:
            if not out.is_dir():
                raise
            say(f"another ingestion of this manifest finished first: keeping its files in {out}")
        say(f"ingested {_files(len(entries))} ({total} bytes) in {time.monotonic() - started:.1f}s")
        return 0
    except DownloadError as error:
        say(f"ingestion failed: cannot download {error.entry.url} (path {error.entry.path}): {error.reason}")
        return 1
    except Interrupted as stopped:
        say(f"ingestion stopped by signal {stopped.args[0]}: no file was kept")
        return 128 + int(stopped.args[0])
    except OSError as error:
        say(f"ingestion failed: {error}")
        return 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # cleaning up now: a second signal must not cut it short
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        downloads.abandon()  # after a rename there is nothing left to delete


if __name__ == "__main__":
    try:
        code = main()
    except SystemExit as exit_:  # argparse
        code = exit_.code if isinstance(exit_.code, int) else 2
    except BaseException:
        import traceback
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # do not wait for downloads abandoned mid-transfer (their threads would block the exit)
