"""Starts one container's process for the fake kubelet (run as `python launch.py <json>`, a fresh process with no
threads): with volume mounts, in a mount namespace of its own where each volume's directory is bind-mounted at
its mountPath (so `/pfs/out` means the pod's volume, and nothing changes outside); then into the working
directory (made if missing, as container runtimes do) and exec of the command with exactly the environment given.

    {"argv": [...], "env": {...}, "cwd": "/pfs/code", "mounts": [[host dir, mountPath, read only], ...],
     "error_fd": N}

Failing before the exec (a mount refused, a command not found) writes why to `error_fd` and exits 128: the kubelet
reports the container as terminated with reason StartError, as containerd does. Standard library only.
"""
import ctypes
import json
import os
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


def main() -> None:
    config = json.loads(sys.argv[1])
    error = os.fdopen(config["error_fd"], "w")
    try:
        if config["mounts"]:
            setup_mounts(config["mounts"])
        if config["cwd"]:
            os.makedirs(config["cwd"], exist_ok=True)
            os.chdir(config["cwd"])
        os.set_inheritable(error.fileno(), False)
        os.execvpe(config["argv"][0], config["argv"], config["env"])
    except OSError as failure:
        error.write(f"failed to create containerd task: failed to create shim task: OCI runtime create failed: "
                    f"runc create failed: unable to start container process: {failure}")
        error.flush()
        os._exit(128)


if __name__ == "__main__":
    main()
