"""Running a workload as an unprivileged user of its own that sees only its own files (when the backend is root).

The runner (`runner.py`, root) prepares the workload's process before it execs:

1. **A user of its own**: a uid (and gid) from a range no account uses, claimed for the workload's life with a
   lock in `/run/kaos/workload-uids/` so that no two running workloads (of any kaos on the machine) share one. A
   workload can then neither signal, trace nor read the processes of another (`/proc/<pid>/environ`, `cwd`,
   `root`), nor write its files. Where no uid can be claimed, the shared system user `kaos` (created on first use,
   else `nobody`) is the fallback, and the log says so.
2. **A mount namespace of its own**: the backend's data directory (database, token, blobs, other workloads' files)
   and every directory on the way to a path it needs that it could not traverse (`/root` when Python lives in
   `/root/.pyenv`, say) are covered by an empty tmpfs; `/tmp` and `/var/tmp` are its private scratch directory
   and `/dev/shm` a fresh tmpfs; then the paths it needs are bind-mounted back at their own paths, read-only
   unless they are its outputs: its work, output and home directories, its virtualenv, its data and
   hyperparameters, the Python installation and the kaos package that runs it.
3. **No new privileges** and no supplementary groups.

Paths inside are the same as outside (no translation). Where mount namespaces are not allowed (a container
without CAP_SYS_ADMIN) the user still changes and the log says the files are not isolated.

Standard library only (ctypes for unshare(2) and mount(2)).
"""
import ctypes
import hashlib
import os
import pwd
import shutil
import stat
import subprocess
from typing import Iterable, List, NamedTuple, Optional, Tuple

from kaos_backend.file_locks import try_lock

DEFAULT_USER = "kaos"
FALLBACK_USER = "nobody"
# Workload uids (and gids): in the range systemd documents as unused, 0x70000000-0x7FFFFFFF, below 2^31 because
# software masks ids to 31 bits (gunicorn does) or stores them signed (systemd.io/UIDS-GIDS).
UID_BASE = 0x71000000
UID_SLOTS = 1_000_000
UID_CLAIMS = "/run/kaos/workload-uids"
PRIVATE_TMP = ("/tmp", "/var/tmp")
CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 0x1, 0x2, 0x4, 0x20, 0x1000, 0x4000, 1 << 18
PR_SET_NO_NEW_PRIVS = 38

_libc = None


def _c() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _check(result: int, what: str) -> None:
    if result != 0:
        number = ctypes.get_errno()
        raise OSError(number, f"{what}: {os.strerror(number)}")


class Identity(NamedTuple):
    user: str   # what USER and LOGNAME say
    uid: int
    gid: int


def is_root() -> bool:
    return os.geteuid() == 0


def shared_identity(name: str = DEFAULT_USER) -> Tuple[Identity, Optional[str]]:
    """The system user `name`, created when missing (root only), with a note when it had to fall back to
    `nobody` (None otherwise)."""
    try:
        entry = pwd.getpwnam(name)
        return Identity(entry.pw_name, entry.pw_uid, entry.pw_gid), None
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    try:
        subprocess.run([useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                        "--shell", "/usr/sbin/nologin", "--comment", "kaos workloads", name],
                       check=True, capture_output=True, timeout=30)
        entry = pwd.getpwnam(name)
        return Identity(entry.pw_name, entry.pw_uid, entry.pw_gid), None
    except (OSError, subprocess.SubprocessError, KeyError) as error:
        try:  # another backend starting on this machine created it meanwhile (useradd: user already exists)
            entry = pwd.getpwnam(name)
            return Identity(entry.pw_name, entry.pw_uid, entry.pw_gid), None
        except KeyError:
            pass
        note = f"cannot create the user {name} ({error}); workloads run as {FALLBACK_USER}"
    entry = pwd.getpwnam(FALLBACK_USER)
    return Identity(entry.pw_name, entry.pw_uid, entry.pw_gid), note


def claim_identity(seed: str, user: str = DEFAULT_USER, claims: str = UID_CLAIMS) -> Tuple[Identity, int]:
    """A uid of the workload's own and the open file whose lock claims it: keep the descriptor open for as long
    as the workload runs (closing it releases the uid). The search starts at a slot derived from `seed`.
    OSError when the claims directory cannot be made; RuntimeError when every uid is taken."""
    os.makedirs(claims, mode=0o700, exist_ok=True)
    start = int(hashlib.sha256(seed.encode()).hexdigest()[:8], 16) % UID_SLOTS
    for offset in range(UID_SLOTS):
        uid = UID_BASE + (start + offset) % UID_SLOTS
        fd = try_lock(os.path.join(claims, str(uid)))
        if fd is not None:
            return Identity(user, uid, uid), fd
    raise RuntimeError("every workload uid is taken")


def searchable(path: str, identity: Identity) -> bool:
    """Could `identity` (with no supplementary groups) traverse the directory `path`? (Mode bits; ACLs ignored.)"""
    try:
        info = os.stat(path)
    except OSError:
        return False
    if info.st_uid == identity.uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid == identity.gid:
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)


def _ancestors(path: str) -> List[str]:
    """`/a/b/c` → ["/a", "/a/b"] (from the top, without "/" and without the path itself)."""
    parts = os.path.normpath(path).split("/")[1:-1]
    return ["/" + "/".join(parts[:index]) for index in range(1, len(parts) + 1)]


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


class MountPlan(NamedTuple):
    """What the workload's process mounts: over each of `covers` (path, source) an empty tmpfs (source None) or
    the directory `source`; a fresh tmpfs on /dev/shm when `fresh_shm`; then `binds` (path, writable) back."""
    covers: List[Tuple[str, Optional[str]]]
    binds: List[Tuple[str, bool]]
    fresh_shm: bool = True


def plan_mounts(identity: Identity, hide: Iterable[str], expose: Iterable[Tuple[str, bool]],
                private_tmp: Optional[str] = None) -> MountPlan:
    """Cover each directory of `hide`, every untraversable directory above an exposed path, and (with
    `private_tmp`) /tmp and /var/tmp by that directory; bind back the exposed paths that a cover would hide.
    Pure function of the paths and their modes."""
    expose = [(os.path.realpath(path), writable) for path, writable in expose if os.path.lexists(path)]
    covers = {os.path.realpath(path): None for path in hide if os.path.isdir(path)}
    if private_tmp:
        covers.update({path: private_tmp for path in PRIVATE_TMP if os.path.isdir(path)})
    for path, _ in expose:
        for ancestor in _ancestors(path):
            if not searchable(ancestor, identity):
                covers.setdefault(ancestor, None)
                break
    kept = sorted((path, source) for path, source in covers.items()
                  if not any(other != path and _under(path, other) for other in covers))
    binds = sorted(((path, writable) for path, writable in expose if any(_under(path, cover) for cover, _ in kept)),
                   key=lambda item: (item[0].count("/"), item[0]))
    return MountPlan(kept, binds)


def apply_in_child(plan: MountPlan, identity: Identity, workdir: str, isolate_files: bool) -> None:
    """In the workload's process, before exec (root): the mounts of `plan`, then the user's identity."""
    libc = _c()
    if isolate_files:
        _check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
        _check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")
        handles = [(os.open(path, os.O_PATH), path, writable) for path, writable in plan.binds]
        sources = {source: os.open(source, os.O_PATH) for _, source in plan.covers if source}
        for cover, source in plan.covers:
            if source:
                _bind(libc, sources[source], cover, writable=True)
            else:
                _check(libc.mount(b"tmpfs", cover.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, b"mode=0755,size=1m"),
                       f"mount tmpfs on {cover}")
        if plan.fresh_shm and os.path.isdir("/dev/shm"):
            _check(libc.mount(b"tmpfs", b"/dev/shm", b"tmpfs", MS_NOSUID | MS_NODEV, b"mode=1777"),
                   "mount tmpfs on /dev/shm")
        for handle, path, writable in handles:
            _make_mount_point(path, os.path.isdir(f"/proc/self/fd/{handle}"))
            _bind(libc, handle, path, writable)
        for handle in [handle for handle, _, _ in handles] + list(sources.values()):
            os.close(handle)
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    os.umask(0o022)
    os.setgroups([])
    os.setgid(identity.gid)
    os.setuid(identity.uid)
    os.chdir(workdir)


def _bind(libc, handle: int, path: str, writable: bool) -> None:
    _check(libc.mount(f"/proc/self/fd/{handle}".encode(), path.encode(), None, MS_BIND | MS_REC, None),
           f"bind mount {path}")
    if not writable:
        _check(libc.mount(None, path.encode(), None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID, None),
               f"read-only remount of {path}")


def _make_mount_point(path: str, is_dir: bool) -> None:
    if os.path.lexists(path):
        return
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    if is_dir:
        os.mkdir(path, 0o755)
    else:
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))


_namespaces_allowed: Optional[str] = None


def namespace_problem() -> Optional[str]:
    """None when this process may make mount namespaces (tried once in a child), else why not."""
    global _namespaces_allowed
    if _namespaces_allowed is None:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            os.close(read)
            try:
                _check(_c().unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
                os.write(write, b"ok")
            except OSError as error:
                os.write(write, str(error).encode()[:500])
            os._exit(0)
        os.close(write)
        answer = os.read(read, 600).decode(errors="replace")
        os.close(read)
        os.waitpid(pid, 0)
        _namespaces_allowed = answer
    return None if _namespaces_allowed == "ok" else _namespaces_allowed


def seal(path: str) -> None:
    """Make what a workload produced for others (a virtualenv, ingested files, a model) the backend's: owned by
    root, readable by everyone, writable by no workload (its uid may be given to another workload later).
    Links are neither followed nor changed."""
    for root, dirs, files in os.walk(path):
        for entry in [root] + [os.path.join(root, name) for name in dirs + files]:
            info = os.lstat(entry)
            if stat.S_ISLNK(info.st_mode):
                continue
            os.lchown(entry, 0, 0)
            readable = 0o755 if stat.S_ISDIR(info.st_mode) or info.st_mode & 0o111 else 0o644
            os.chmod(entry, stat.S_IMODE(info.st_mode) & 0o755 | readable)
    if os.path.isfile(path) and not os.path.islink(path):
        os.lchown(path, 0, 0)


def chown_tree(path: str, identity: Identity) -> None:
    """Give `path` and everything below it (links not followed) to `identity`."""
    os.lchown(path, identity.uid, identity.gid)
    if os.path.isdir(path) and not os.path.islink(path):
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                os.lchown(os.path.join(root, name), identity.uid, identity.gid)
