"""kaos's pod agent: moves a workload's artifacts between the backend and a pod that shares no filesystem with it.

Standard library only and Python 3.7+, one file, so any image with a python3 runs it, passed inline
(pod_commands.py renders the argv):

    python3 -c "<this file>" fetch '<plan>'           download and unpack each artifact of the plan
    python3 -c "<this file>" upload <dir> <url>       zip <dir> and PUT it to <url>

The plan is JSON: {"artifacts": [{"name", "url", "dest", "scripts": [...], "keep": bool}], "dirs": [...],
"max_bytes": N}: each artifact is a zip unpacked into `dest` (merged into what is there: a later artifact's file
replaces an earlier one's; with `keep`, a file already there is kept), its `scripts` (top-level files) made
executable; `dirs` are made writable by anyone (the output directory);
`max_bytes` bounds each download and its unpacked size. Requests carry the token of env KAOS_ARTIFACT_TOKEN.

Zips are checked before anything is written, by the rules of the backend's bundle checks (kaos_backend/bundles.py;
tests/executors/test_pod_agent.py holds both to one corpus): no absolute path, drive letter, backslash, `..`, NUL
byte, link, device or special file, encryption or unknown compression; at most 100,000 members, 64 levels, 4096
bytes a path, 255 a name; no path twice, none both a file and a directory; the sizes within `max_bytes`, also
while writing (a size in the zip may lie). Unlike bundle uploads, hidden top-level entries are kept. (The backend
counts members before `zipfile` reads the central directory; the agent, fetching from its own backend with a
token, counts them after.)

Connection failures, 5xx, 408, 429 and a download cut short are tried again with exponential backoff and jitter
(--attempts, --backoff); any other refusal at once. Each step is one line on stdout (the pod's log), in the
platform's words: "starting to download data", "finished downloading data after <ms>ms" and then what each
artifact brought ("kaos: downloaded source into /pfs/code: ..."), as the other executors log their staging;
"kaos: uploading the output", "kaos: uploaded ..." (records of the platform's, not the training's output). A
failure is one line `kaos: could not ...` and exit code 1.
"""
import json
import os
import random
import re
import stat
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from http.client import HTTPException

MAX_MEMBERS, MAX_DEPTH, MAX_PATH_BYTES, MAX_NAME_BYTES = 100000, 64, 4096, 255  # = kaos_model.bundles
DEFAULT_MAX_BYTES = 4096 * 1024 * 1024
COMPRESSIONS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)
TOKEN_ENV = "KAOS_ARTIFACT_TOKEN"
CHUNK = 1024 * 1024
TIMEOUT = 60.0  # seconds a connect or a read may wait
CAP = 30.0      # seconds at most between two attempts
DRIVE = re.compile(r"^[A-Za-z]:")


class Refused(Exception):
    """Fails the step at once."""


class Transient(Exception):
    """May pass when tried again."""


def member_problem(info):
    """Why this zip member may not be unpacked, or None (kaos_backend.bundles' rules)."""
    name = info.filename
    if "\0" in info.orig_filename:
        return "a NUL byte in its name"
    path = name.rstrip("/")
    if sum(1 for part in path.split("/") if part not in ("", ".")) > MAX_DEPTH:
        return "nested more than %d levels deep" % MAX_DEPTH
    if len(path.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
        return "its path is longer than %d bytes" % MAX_PATH_BYTES
    if "\\" in name:
        return "backslash in its path"
    if name.startswith("/"):
        return "absolute path"
    if DRIVE.match(name):
        return "drive letter in its path"
    if ".." in name.split("/"):
        return "'..' component in its path"
    if any(len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES for part in name.split("/")):
        return "a path component is longer than %d bytes" % MAX_NAME_BYTES
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind == stat.S_IFLNK:
        return "symbolic link"
    if kind in (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK):
        return "device or special file"
    if info.flag_bits & 0x1:
        return "encrypted"
    if info.compress_type not in COMPRESSIONS:
        return "unsupported compression method %d" % info.compress_type
    return None


def checked_members(archive, max_bytes):
    """[(info, parts, is_dir)] of every member, or Refused naming the first that may not be unpacked."""
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise Refused("more than %d members" % MAX_MEMBERS)
    members, files, dirs, listed, total = [], set(), set(), set(), 0
    for info in infos:
        problem = member_problem(info)
        if problem:
            raise Refused("member %r is not allowed: %s" % (info.orig_filename, problem))
        parts = tuple(part for part in info.filename.split("/") if part not in ("", "."))
        if not parts:
            continue
        is_dir = info.is_dir() or stat.S_ISDIR(info.external_attr >> 16)
        for depth in range(1, len(parts) + (0 if is_dir else -1) + 1):
            dirs.add(parts[:depth])
        if parts in (listed if is_dir else files):
            raise Refused("member %r is stored more than once" % info.filename)
        (listed if is_dir else files).add(parts)
        if not is_dir:
            total += info.file_size
        members.append((info, parts, is_dir))
    clash = files & dirs
    if clash:
        raise Refused("%r is both a file and a directory" % "/".join(sorted(clash)[0]))
    if len(files | dirs) > MAX_MEMBERS:
        raise Refused("more than %d members" % MAX_MEMBERS)
    if total > max_bytes:
        raise Refused("%d bytes unpacked, more than the limit of %d" % (total, max_bytes))
    return members


def unpack(zip_path, dest, max_bytes, scripts=(), keep=False):
    """Unpack the zip at `zip_path` into `dest` (merged), every member checked first; (files, bytes) written.
    With `keep`, a file `dest` holds already is left as it is (a notebook's work directory: its edits win)."""
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise Transient("the zip is malformed (%s)" % error)
    with archive:
        members = checked_members(archive, max_bytes)
        os.makedirs(dest, mode=0o755, exist_ok=True)
        root = os.path.realpath(dest)
        budget, count = max_bytes, 0
        for info, parts, is_dir in members:
            target = os.path.join(root, *parts)
            if os.path.commonpath([root, os.path.realpath(os.path.dirname(target))]) != root:
                raise Refused("member %r would be written outside %s" % (info.filename, dest))
            if is_dir:
                os.makedirs(target, mode=0o755, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
            if keep and os.path.lexists(target):
                continue
            script = len(parts) == 1 and parts[0] in scripts
            mode = 0o644 | (info.external_attr >> 16) & 0o111 | (0o755 if script else 0)
            budget = _write_member(archive, info, target, mode, budget)
            count += 1
    return count, max_bytes - budget


def _write_member(archive, info, target, mode, budget):
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    with os.fdopen(os.open(target, flags, mode), "wb") as sink:
        try:
            with archive.open(info) as source:
                for chunk in iter(lambda: source.read(CHUNK), b""):
                    budget -= len(chunk)
                    if budget < 0:
                        raise Refused("more bytes unpacked than the limit")
                    sink.write(chunk)
        except (zipfile.BadZipFile, zlib.error, EOFError) as error:
            raise Transient("the zip is malformed (%s)" % error)
    os.chmod(target, mode)
    return budget


def request(method, url, body=None, length=None, sink=None, limit=None):
    """One HTTP exchange with the token; the answer's body (JSON) or, with `sink`, the bytes written to it."""
    headers = {"Authorization": "Bearer " + os.environ.get(TOKEN_ENV, "")}
    if length is not None:
        headers.update({"Content-Length": str(length), "Content-Type": "application/zip"})
    try:
        with urllib.request.urlopen(urllib.request.Request(url, body, headers, method=method),
                                    timeout=TIMEOUT) as answer:
            if sink is None:
                return json.loads(answer.read(1024 * 1024) or b"null")
            size, expected = 0, answer.headers.get("Content-Length")
            for chunk in iter(lambda: answer.read(CHUNK), b""):
                size += len(chunk)
                if size > limit:
                    raise Refused("the download is larger than the limit of %d bytes" % limit)
                sink.write(chunk)
            if expected is not None and size != int(expected):
                raise Transient("the download was cut short (%d of %s bytes)" % (size, expected))
            return size
    except urllib.error.HTTPError as error:
        why = "%s %s: %s" % (error.code, error.reason, _message(error))
        raise (Transient if error.code >= 500 or error.code in (408, 429) else Refused)(why)
    except (urllib.error.URLError, HTTPException, OSError) as error:
        raise Transient(str(getattr(error, "reason", None) or error) or type(error).__name__)


def _message(error):
    try:
        return json.loads(error.read(64 * 1024))["message"]
    except Exception:  # not the backend's JSON: its status says enough
        return "no details"


def attempt(what, step, attempts, backoff):
    """`step()` until it passes, at most `attempts` times; Refused once it cannot."""
    for number in range(1, attempts + 1):
        try:
            return step()
        except Transient as error:
            if number == attempts:
                raise Refused("%s (after %d attempts)" % (error, attempts))
            delay = min(CAP, backoff * 2 ** (number - 1)) * (0.5 + random.random() / 2)
            say("kaos: %s failed (%s), trying again in %.1fs (attempt %d of %d)"
                % (what, error, delay, number + 1, attempts))
            time.sleep(delay)


def fetch(plan, attempts, backoff):
    started = time.monotonic()
    limit = int(plan.get("max_bytes") or DEFAULT_MAX_BYTES)
    say("starting to download data")
    for path in plan.get("dirs", []):
        os.makedirs(path, exist_ok=True)
        os.chmod(path, 0o777)  # the image's user may be another than the agent's
    details = []
    for item in plan["artifacts"]:
        name, began = item["name"], time.monotonic()
        try:
            files, size = attempt("downloading " + name, lambda: _fetch_one(item, limit), attempts, backoff)
        except Refused as error:
            raise Refused("could not download %s: %s" % (name, error))
        details.append("kaos: downloaded %s into %s: %d files, %d bytes after %dms"
                       % (name, item["dest"], files, size, (time.monotonic() - began) * 1000))
    say("finished downloading data after %.6fms" % ((time.monotonic() - started) * 1000))
    for line in details:  # after the platform's record of the download, as the other executors' notes come
        say(line)


def _fetch_one(item, limit):
    parent = os.path.dirname(os.path.abspath(item["dest"]))
    os.makedirs(parent, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=parent, prefix=".kaos-download-", suffix=".zip") as spool:
        request("GET", item["url"], sink=spool, limit=limit)
        spool.flush()
        return unpack(spool.name, item["dest"], limit, tuple(item.get("scripts", ())), bool(item.get("keep")))


def zip_tree(root, sink):
    """Zip the directories and regular files under `root` into `sink`; (files, bytes, what was left out)."""
    files, size, left_out = 0, 0, []
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED) as archive:
        for current, dirs, names in os.walk(root):
            relative = os.path.relpath(current, root)
            for name in sorted(dirs):
                if os.path.islink(os.path.join(current, name)):
                    left_out.append(os.path.normpath(os.path.join(relative, name)) + " (a symbolic link)")
            dirs[:] = sorted(name for name in dirs if not os.path.islink(os.path.join(current, name)))
            if relative != "." and not names and not dirs:
                archive.writestr(zipfile.ZipInfo.from_file(current, relative), b"")
            for name in sorted(names):
                path, member = os.path.join(current, name), os.path.normpath(os.path.join(relative, name))
                info = os.lstat(path)
                if not stat.S_ISREG(info.st_mode):
                    left_out.append(member + (" (a symbolic link)" if stat.S_ISLNK(info.st_mode)
                                              else " (not a regular file)"))
                    continue
                archive.write(path, member)
                files, size = files + 1, size + info.st_size
    return files, size, left_out


def upload(directory, url, attempts, backoff):
    started = time.monotonic()
    say("kaos: uploading the output")
    if not os.path.isdir(directory):
        raise Refused("could not upload the output: %s is not a directory" % directory)
    with tempfile.TemporaryFile(suffix=".zip") as spool:
        files, size, left_out = zip_tree(directory, spool)
        if left_out:
            say("kaos: left out of the output: " + "; ".join(left_out[:20]))
        length = spool.tell()

        def put():
            spool.seek(0)
            return request("PUT", url, body=spool, length=length)
        try:
            attempt("uploading the output", put, attempts, backoff)
        except Refused as error:
            raise Refused("could not upload the output: %s" % error)
    say("kaos: uploaded %s: %d files, %d bytes after %dms"
        % (directory, files, size, (time.monotonic() - started) * 1000))


def say(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main(argv):
    import argparse
    parser = argparse.ArgumentParser(prog="pod_agent")
    parser.add_argument("--attempts", type=int, default=8)
    parser.add_argument("--backoff", type=float, default=1.0, help="seconds before the 2nd attempt, doubling")
    parser.add_argument("verb", choices=("fetch", "upload"))
    parser.add_argument("arguments", nargs="+")
    args = parser.parse_args(argv)
    try:
        if not os.environ.get(TOKEN_ENV):
            raise Refused("could not %s: %s is not set" % (args.verb, TOKEN_ENV))
        if args.verb == "fetch":
            fetch(json.loads(args.arguments[0]), max(1, args.attempts), args.backoff)
        elif len(args.arguments) != 2:
            raise Refused("could not upload: expected <directory> <url>")
        else:
            upload(args.arguments[0], args.arguments[1], max(1, args.attempts), args.backoff)
    except (Refused, OSError, ValueError, KeyError) as error:
        say("kaos: %s" % error if isinstance(error, Refused) else "kaos: could not %s: %s" % (args.verb, error))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
