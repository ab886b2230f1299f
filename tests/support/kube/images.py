"""What a container image stands for on this machine: the fake's kubelet runs a container's command as a local
process, so an image is only an environment and defaults (entrypoint, cmd, working directory), plus a rewrite
of the command line (e.g. `python3` → this interpreter). A test gives the cluster an `ImageResolver`: image
reference → `Image`, or None for an image that cannot be pulled (the container then waits with ErrImagePull,
then ImagePullBackOff, as on a real node)."""
import os
import sys
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional


def host_path() -> str:
    return os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")


@dataclass
class Image:
    env: Dict[str, str] = field(default_factory=lambda: {"PATH": host_path(), "HOME": "/root"})
    entrypoint: List[str] = field(default_factory=list)   # used when the container gives no `command`
    cmd: List[str] = field(default_factory=list)          # used when the container gives neither command nor args
    working_dir: str = ""                                 # used when the container gives no workingDir
    rewrite: Callable[[List[str]], List[str]] = lambda argv: argv   # the final command line → what runs here


ImageResolver = Callable[[str], Optional[Image]]


def this_python(argv: List[str]) -> List[str]:
    """`python`/`python3` as the first word of a command line means the interpreter running the tests."""
    if argv and argv[0] in ("python", "python3"):
        return [sys.executable] + argv[1:]
    return argv


def host_images(image: str) -> Image:
    """The default resolver: every image is this machine, its PATH and its programs (python: this one)."""
    return Image(rewrite=this_python)


def known_images(images: Dict[str, Image]) -> ImageResolver:
    """A resolver for exactly these images (reference → Image); any other cannot be pulled."""
    return images.get
