"""Atomic replacement of a file or directory: write elsewhere, then rename over it.

Writing a results file in place destroys the old one as soon as it is opened, so a
failure half-way (a full disk, a quota, an exception in the writer) loses both. Here the
writer fills a temporary path in the same directory (same filesystem, so the final
rename is a metadata operation), which replaces the target only after the writer has
returned and the data are flushed to disk.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable


def _fsync(path: str) -> None:
    # Data reach the disk before the rename makes them visible under the target's name.
    if os.path.isdir(path):
        for root, _, files in os.walk(path):
            for name in files:
                _fsync(os.path.join(root, name))
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


def atomic_write(path: str | os.PathLike, writer: Callable[[str], None]) -> None:
    """Call ``writer(temporary_path)``, then move the result to ``path``.

    Parameters
    ----------
    path : str or path-like
        The target; an existing file (or directory, for a zarr store) is replaced only
        once ``writer`` has succeeded.
    writer : callable
        Writes the complete output to the path it is given (which does not exist yet).

    Raises
    ------
    Exception
        Whatever ``writer`` raised; the target is then unchanged and the temporary
        path removed.
    """
    target = os.path.abspath(os.fspath(path))
    directory, name = os.path.split(target)
    # mkdtemp: a private, unique name in the target's directory (same filesystem).
    holder = tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    temporary = os.path.join(holder, name)
    try:
        writer(temporary)
        _fsync(temporary)
        if os.path.isdir(temporary) and os.path.isdir(target):
            # A directory cannot be renamed over a non-empty one: move the old one
            # aside first, and back if the final rename fails.
            aside = os.path.join(holder, name + ".old")
            os.replace(target, aside)
            try:
                os.replace(temporary, target)
            except BaseException:
                os.replace(aside, target)
                raise
        else:
            os.replace(temporary, target)
    finally:
        _remove(holder)
