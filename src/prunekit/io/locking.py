"""Locks that keep concurrent saves to one directory, and loads during a save, apart.

A save takes an exclusive lock, a load a shared one, on the directory that *holds* the save
directory (``fcntl.flock`` on the parent directory itself): nothing is created beside the save,
so no lock file is left over, and the kernel drops the lock of a process that dies, so a
killed save never blocks the next one. Where directories cannot be locked (no ``fcntl``, or a
file system that refuses ``flock`` on a directory), saves fall back to ``filelock`` on a hidden
``.NAME.lock`` file beside the save when that package is installed; loads then take no lock.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


@contextmanager
def locked(directory: Path, *, shared: bool = False) -> Iterator[None]:
    """Hold the save lock of ``directory`` (exclusive to write it, ``shared`` to read it)."""
    parent = directory.absolute().parent
    fd = _locked_parent(parent, shared)
    if fd is not None:
        try:
            yield
        finally:
            with suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        return
    if shared:
        yield
        return
    with _file_lock(parent / f".{directory.name}.lock"):
        yield


def _locked_parent(parent: Path, shared: bool) -> int | None:
    """An open descriptor of ``parent`` holding the lock, or ``None`` where that is unsupported."""
    if fcntl is None:
        return None
    try:
        fd = os.open(parent, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
    except OSError:
        os.close(fd)
        return None
    return fd


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    try:
        from filelock import FileLock
    except ImportError:
        yield
        return
    with FileLock(str(path)):
        yield
