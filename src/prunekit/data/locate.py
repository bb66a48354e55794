"""Find the folder that holds a data set's files, without downloading anything.

A *data root* is a folder holding one sub-folder per data set (``mnist/``, ``fashion-mnist/``).
When no root is given, these are searched in order and the first that holds the files wins:

1. the folder named by the environment variable ``PRUNEKIT_DATA``;
2. ``shared/data`` beside the current directory and beside each of its parents (so
   ``../shared/data`` from a checkout), then the same beside the installed package's source file;
3. ``/usr/share/datasets`` (where Debian's ``dataset-fashion-mnist`` installs).

The search reads the environment and the current directory at call time; nothing is cached.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from prunekit.errors import DataError

ENV_VAR = "PRUNEKIT_DATA"
SYSTEM_ROOT = Path("/usr/share/datasets")
_PACKAGE_FILE = Path(__file__).resolve()


def candidate_roots(
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    anchor: Path | None = None,
) -> list[Path]:
    """The data roots searched when none is given, in order, without duplicates.

    ``env``, ``cwd`` and ``anchor`` (the package source file) default to the live values; tests
    pass their own to make the search deterministic.
    """
    env = os.environ if env is None else env
    cwd = Path.cwd() if cwd is None else cwd
    anchor = _PACKAGE_FILE if anchor is None else anchor
    roots: list[Path] = []
    if env.get(ENV_VAR):
        roots.append(Path(env[ENV_VAR]).expanduser())
    for base in (cwd, anchor.parent):
        roots.extend(folder / "shared" / "data" for folder in (base, *base.parents))
    roots.append(SYSTEM_ROOT)
    return list(dict.fromkeys(roots))


def find_file(folder: Path, name: str) -> Path | None:
    """``folder/name`` if it exists, else ``folder/name.gz`` if that exists, else ``None``."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def files_in(folder: Path, names: Sequence[str]) -> tuple[Path, ...] | None:
    """The paths of all ``names`` in ``folder`` (raw or gzipped), or ``None`` if one is missing."""
    paths = [path for name in names if (path := find_file(folder, name)) is not None]
    return tuple(paths) if len(paths) == len(names) else None


def find_dataset_files(
    subdir: str,
    names: Sequence[str],
    root: str | Path | None = None,
    *,
    candidates: Sequence[Path] | None = None,
) -> tuple[Path, ...]:
    """The paths of the files ``names`` (raw or ``.gz``) of the data set kept in ``subdir``.

    With ``root`` given, look in ``root/subdir`` and then in ``root`` itself (so a folder of IDX
    files, e.g. torchvision's ``MNIST/raw``, works too) and nowhere else. Without it, search
    ``candidates`` (default :func:`candidate_roots`) and take the first folder holding all the
    files. Raises :class:`DataError` listing every folder searched and how to point prunekit at
    the data.
    """
    if root is not None:
        root = Path(root).expanduser()
        searched = [root / subdir, root]
    else:
        roots = candidate_roots() if candidates is None else candidates
        searched = [r / subdir for r in roots]
    for folder in searched:
        if (paths := files_in(folder, names)) is not None:
            return paths
    places = "\n".join(f"  - {folder}" for folder in searched)
    how = (
        "check that the folder holds them, or pass a different root"
        if root is not None
        else f"pass root=/path/to/data (the folder holding {subdir}/) "
        f"or set {ENV_VAR}=/path/to/data"
    )
    raise DataError(
        f"cannot find the {subdir} files {', '.join(names)} (raw or .gz); searched:\n"
        f"{places}\n{how}"
    )
