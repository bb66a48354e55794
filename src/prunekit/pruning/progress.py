"""Progress over the stages of a pruning call (trace, score, select, surgery, verify, ...).

Each stage of a structural prune can take seconds to minutes on a large model; with
``progress=True`` a tqdm bar names the stage that is running and how many are done.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType

from tqdm.auto import tqdm


class Stages:
    """A context manager that advances one bar through named stages."""

    def __init__(self, names: Sequence[str], *, enabled: bool, desc: str = "prune") -> None:
        self._names = list(names)
        self._desc = desc
        self._bar = tqdm(total=len(self._names), desc=desc, disable=not enabled, leave=False)
        self._done = 0

    def start(self, name: str) -> None:
        """Mark the previous stage done and show ``name`` as running."""
        if name not in self._names:
            raise ValueError(f"unknown stage {name!r}; stages: {self._names}")
        if self._done:
            self._bar.update(1)
        self._done += 1
        self._bar.set_description(f"{self._desc}: {name}")

    def __enter__(self) -> Stages:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if kind is None and self._done:
            self._bar.update(1)
        self._bar.close()
