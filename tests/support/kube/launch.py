"""Starts one container's process for the fake kubelet (run as `python launch.py <json>`, a fresh process with no
threads): with volume mounts, in a mount namespace of its own where each volume's directory is bind-mounted at
its mountPath (so `/pfs/out` means the pod's volume, and nothing changes outside); then into the working
directory (made if missing, as container runtimes do) and exec of the command with exactly the environment given.

    {"argv": [...], "env": {...}, "cwd": "/pfs/code", "mounts": [[host dir, mountPath, read only], ...],
     "error_fd": N}

Failing before the exec (a mount refused, a command not found) writes why to `error_fd` and exits 128: the kubelet
reports the container as terminated with reason StartError, as containerd does. Standard library only.

As root, the command runs in a PID namespace of its own (util-linux `unshare --pid --fork`, which waits for it,
passes its exit status on and ignores the SIGTERM the kubelet sends the group), under tini as the namespace's
first process where tini is installed (Debian's docker.io brings it): as in a container, when the command ends
the kernel ends every other process of the container, also those that left its session or double-forked. tini
passes signals on to the command, as a container run with an init does (`docker run --init`); without tini the
command is the first process itself and gets only the signals it handles (SIGKILL aside), as in a pod.
"""
import ctypes
import errno
import json
import os
import shutil
import sys

CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 0x1, 0x20, 0x1000, 0x4000, 1 << 18


def _mount(libc, source, target, flags) -> None:
    if libc.mount(source, target, None, flags, None) != 0:
        number = ctypes.get_errno()
        raise OSError(number, f"mount {target.decode()}: {os.strerror(number)}")


def setup_mounts(mounts) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        number = ctypes.get_errno()
        raise OSError(number, f"a mount namespace for the volumes: {os.strerror(number)} (the fake kubelet mounts "
                      "volumes at their mountPath as root only)")
    _mount(libc, None, b"/", MS_REC | MS_PRIVATE)
    for source, target, read_only in mounts:
        _mount(libc, source.encode(), target.encode(), MS_BIND | MS_REC)
        if read_only:
            _mount(libc, None, target.encode(), MS_BIND | MS_REMOUNT | MS_RDONLY)


def pid_namespace(argv, env):
    """`argv` run as the first process of a PID namespace of its own (root and util-linux's unshare needed; else
    `argv` as it is). Raises OSError as exec would for a command that cannot be run (before unshare hides it)."""
    program = argv[0]
    found = shutil.which(program, path=env.get("PATH", os.defpath)) if "/" not in program else program
    if found is None or not os.path.exists(found):
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT))
    if os.path.isdir(found) or not os.access(found, os.X_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
    unshare, init = shutil.which("unshare"), shutil.which("tini")
    if os.geteuid() != 0 or unshare is None:
        return argv
    return [unshare, "--pid", "--fork", "--kill-child", "--"] + ([init, "-s", "--"] if init else []) + list(argv)


def main() -> None:
    config = json.loads(sys.argv[1])
    error = os.fdopen(config["error_fd"], "w")
    try:
        if config["mounts"]:
            setup_mounts(config["mounts"])
        if config["cwd"]:
            os.makedirs(config["cwd"], exist_ok=True)
            os.chdir(config["cwd"])
        argv = pid_namespace(config["argv"], config["env"])
        os.set_inheritable(error.fileno(), False)
        os.execvpe(argv[0], argv, config["env"])
    except OSError as failure:
        error.write(f"failed to create containerd task: failed to create shim task: OCI runtime create failed: "
                    f"runc create failed: unable to start container process: {failure}")
        error.flush()
        os._exit(128)


if __name__ == "__main__":
    main()
