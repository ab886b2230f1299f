"""Running a workload as an unprivileged user that sees only its own files (when the backend runs as root).

The workload's process gets, before it execs (see `runner.py`):

1. a mount namespace of its own in which every directory it must not see is covered by an empty tmpfs: the
   backend's data directory (database, token, blobs, other workloads' files) and every directory on the way to a
   path it needs that the workload user could not traverse (`/root` when Python lives in `/root/.pyenv`, say);
2. the paths it needs bind-mounted back at their own paths, read-only unless they are its outputs: its work,
   output and home directories, its virtualenv, its data and hyperparameters, the Python installation and the
   kaos package that runs it;
3. the workload user's identity (no supplementary groups, no new privileges): `kaos` by default, created as a
   system user on first use (else `nobody`).

So a training cannot read `kaos.db`, the token, nor `/proc/<backend pid>/environ` (another user's), and paths
inside it are the same as outside (no translation). Where mount namespaces are not allowed (a container without
CAP_SYS_ADMIN) the user still changes and the log says the files are not isolated.

Standard library only (ctypes for unshare(2) and mount(2)).
"""
import ctypes
import os
import pwd
import shutil
import stat
import subprocess
from typing import Iterable, List, NamedTuple, Optional, Tuple

DEFAULT_USER = "kaos"
FALLBACK_USER = "nobody"
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
    user: str
    uid: int
    gid: int


def is_root() -> bool:
    return os.geteuid() == 0


def workload_identity(name: str = DEFAULT_USER) -> Tuple[Identity, Optional[str]]:
    """The user workloads run as, created as a system user when missing (root only), with a note when it had
    to fall back to `nobody` (None otherwise)."""
    try:
        entry = pwd.getpwnam(name)
        return Identity(entry.pw_name, entry.pw_uid, entry.pw_gid), None
    except KeyError:
        pass
    note = None
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    try:
        subprocess.run([useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                        "--shell", "/usr/sbin/nologin", "--comment", "kaos workloads", name],
                       check=True, capture_output=True, timeout=30)
        entry = pwd.getpwnam(name)
        return Identity(entry.pw_name, entry.pw_uid, entry.pw_gid), None
    except (OSError, subprocess.SubprocessError, KeyError) as error:
        note = f"cannot create the user {name} ({error}); workloads run as {FALLBACK_USER}"
    entry = pwd.getpwnam(FALLBACK_USER)
    return Identity(entry.pw_name, entry.pw_uid, entry.pw_gid), note


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
    """What the workload's process mounts: empty tmpfs over `covers`, then `binds` (path, writable) back."""
    covers: List[str]
    binds: List[Tuple[str, bool]]


def plan_mounts(identity: Identity, hide: Iterable[str], expose: Iterable[Tuple[str, bool]]) -> MountPlan:
    """Cover each directory of `hide` and every untraversable directory above an exposed path; bind back the
    exposed paths that a cover would hide. Pure function of the paths and their modes."""
    expose = [(os.path.realpath(path), writable) for path, writable in expose if os.path.exists(path)]
    covers = {os.path.realpath(path) for path in hide if os.path.isdir(path)}
    for path, _ in expose:
        for ancestor in _ancestors(path):
            if not searchable(ancestor, identity):
                covers.add(ancestor)
                break
    covers = sorted(path for path in covers if not any(other != path and _under(path, other) for other in covers))
    binds = sorted(((path, writable) for path, writable in expose if any(_under(path, cover) for cover in covers)),
                   key=lambda item: (item[0].count("/"), item[0]))
    return MountPlan(covers, binds)


def apply_in_child(plan: MountPlan, identity: Identity, workdir: str, isolate_files: bool) -> None:
    """In the workload's process, before exec (root): the mounts of `plan`, then the user's identity."""
    libc = _c()
    if isolate_files:
        _check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
        _check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")
        handles = [(os.open(path, os.O_PATH), path, writable) for path, writable in plan.binds]
        for cover in plan.covers:
            _check(libc.mount(b"tmpfs", cover.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, b"mode=0755,size=1m"),
                   f"mount tmpfs on {cover}")
        for handle, path, writable in handles:
            _make_mount_point(path, os.path.isdir(f"/proc/self/fd/{handle}"))
            _check(libc.mount(f"/proc/self/fd/{handle}".encode(), path.encode(), None, MS_BIND | MS_REC, None),
                   f"bind mount {path}")
            if not writable:
                _check(libc.mount(None, path.encode(), None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID, None),
                       f"read-only remount of {path}")
            os.close(handle)
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    os.setgroups([])
    os.setgid(identity.gid)
    os.setuid(identity.uid)
    os.chdir(workdir)


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


def chown_tree(path: str, identity: Identity) -> None:
    """Give `path` and everything below it (links not followed) to the workload user."""
    os.lchown(path, identity.uid, identity.gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), identity.uid, identity.gid)
