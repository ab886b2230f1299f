"""Advisory whole-file locks (flock(2)) that mark a process's claim on something: a workload's watcher or
follower, the scheduler, a workload's uid. The lock lives as long as an open descriptor of the file does (in the
process that took it, or in one it passed the descriptor to), and goes with the process when it dies."""
import fcntl
import os
from typing import Optional


def try_lock(path) -> Optional[int]:
    """The descriptor of `path` (created 0600 if absent) holding its exclusive lock, or None when another open
    file description holds the lock. The caller keeps the descriptor open as long as it holds the claim (it is
    not inherited, as Python's descriptors are not: pass it on with `pass_fds`). OSError when the file cannot
    be opened or made."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def lock_held(path) -> bool:
    """Whether some process (this one included) holds `path`'s lock now; False when the file does not exist.
    The look takes the lock for an instant when nobody holds it, and releases it at once."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
