"""The bounds every bundle (a zip of a directory) keeps, shared by the CLI that makes bundles and the backend
that checks them, so a folder the CLI accepts is never refused after its upload for its shape.

A member's *path* is its name inside the zip without a trailing `/`; its *depth* is the number of components of
that path (`features/training/a.csv` has depth 3). Directories a path implies count as members too.
"""

MAX_BUNDLE_DEPTH = 64             # path components per member
MAX_BUNDLE_PATH_BYTES = 4096      # UTF-8 bytes per member path
MAX_BUNDLE_MEMBERS = 100_000      # files and directories (implied ones included) per bundle
MAX_BUNDLE_NAME_BYTES = 255       # UTF-8 bytes per path component (a file name on Linux)

__all__ = ["MAX_BUNDLE_DEPTH", "MAX_BUNDLE_PATH_BYTES", "MAX_BUNDLE_MEMBERS", "MAX_BUNDLE_NAME_BYTES"]
