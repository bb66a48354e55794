"""Crash-safe writing: stage a file (or a whole directory) beside the target, then rename.

An interrupted save leaves either the previous version or the new one, never a half-written
one or a mix of two saves; temporary files are removed on any exception (``KeyboardInterrupt``
included).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from prunekit.io.locking import locked

_CHUNK = 1 << 20


@contextmanager
def staged(final: Path) -> Iterator[Path]:
    """Yield a fresh temporary path in ``final``'s directory; delete it on exit if still there."""
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    temp = Path(name)
    try:
        yield temp
    finally:
        temp.unlink(missing_ok=True)


def fsync_file(path: Path) -> None:
    """Flush ``path``'s content to disk."""
    with path.open("rb+") as handle:
        os.fsync(handle.fileno())


def fsync_directory(path: Path) -> None:
    """Flush a directory entry (so a rename survives a power cut); a no-op where unsupported."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sha256_of(path: Path) -> str:
    """Hex SHA-256 digest of the file at ``path``, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sibling(directory: Path, role: str) -> Path:
    """The hidden sibling of ``directory`` that holds a save being written (``role="saving"``)
    or the replaced save while the new one moves in (``role="previous"``)."""
    return directory.parent / f".{directory.name}.{role}"


def recover(directory: Path) -> None:
    """Undo a directory switch that a crash interrupted: if ``directory`` is missing and its
    previous version is there, move that back."""
    previous = sibling(directory, "previous")
    if not directory.exists() and previous.is_dir():
        os.replace(previous, directory)
        fsync_directory(directory.parent)


def switch_directory(directory: Path, write: Callable[[Path], None], owned: set[str]) -> None:
    """Make ``directory`` hold what ``write`` writes, all at once.

    ``write`` fills a fresh hidden sibling; entries of the old directory that are not in
    ``owned`` (a user's notes, a run's other files) are copied beside them. Then the old
    directory is renamed aside, the new one renamed into place and the old one deleted. A crash
    at any point leaves either the old save or the new one complete: between the two renames
    the old one is the ``previous`` sibling, which :func:`recover` (called by the next save)
    and :func:`readable` (by the loader) find. The whole switch holds the exclusive save lock
    (:func:`prunekit.io.locking.locked`), so concurrent writers take turns and readers never
    see a half-switched directory.
    """
    with locked(directory):
        _switch(directory, write, owned)


def _switch(directory: Path, write: Callable[[Path], None], owned: set[str]) -> None:
    recover(directory)
    staging, previous = sibling(directory, "saving"), sibling(directory, "previous")
    for stale in (staging, previous):
        shutil.rmtree(stale, ignore_errors=True)
    staging.mkdir()
    try:
        write(staging)
        if directory.is_dir():
            _copy_others(directory, staging, owned)
        fsync_directory(staging)
        if directory.exists():
            os.replace(directory, previous)
        os.replace(staging, directory)
        fsync_directory(directory.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        recover(directory)
        raise
    shutil.rmtree(previous, ignore_errors=True)


def _copy_others(source: Path, target: Path, owned: set[str]) -> None:
    for entry in source.iterdir():
        if entry.name in owned or (target / entry.name).exists():
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, target / entry.name, symlinks=True)
        else:
            shutil.copy2(entry, target / entry.name, follow_symlinks=False)


def readable(directory: Path) -> Path:
    """``directory``, or the previous save a crash left beside it when it is missing."""
    previous = sibling(directory, "previous")
    if not directory.exists() and previous.is_dir():
        return previous
    return directory
