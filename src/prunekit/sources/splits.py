"""Deterministic train / held-out splits of the user's data."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from prunekit.sources.base import SourceError

TEST_FRACTION = 0.2


def split_indices(
    n: int, labels: Sequence[int] | None, seed: int, where: str
) -> tuple[list[int], list[int]]:
    """``(train, test)`` indices: 20% of each class held out (at least one sample of every class
    with two or more), shuffled by ``seed`` so that the first ``k`` of either split are a mixed
    sample. Both splits are non-empty; fewer than two samples is an error naming ``where``."""
    if n < 2:
        raise SourceError(f"{where}: {n} sample(s); a train and a held-out split need at least 2")
    rng = np.random.default_rng(seed)
    groups = _by_label(n, labels)
    train: list[int] = []
    test: list[int] = []
    for members in groups:
        members = list(rng.permutation(members))
        k = round(len(members) * TEST_FRACTION)
        k = min(max(k, 1), len(members) - 1) if len(members) >= 2 else 0
        test += members[:k]
        train += members[k:]
    if not test:  # every class has one sample: hold one out anyway
        test.append(train.pop())
    return [int(i) for i in rng.permutation(train)], [int(i) for i in rng.permutation(test)]


def _by_label(n: int, labels: Sequence[int] | None) -> list[list[int]]:
    if labels is None:
        return [list(range(n))]
    groups: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        groups.setdefault(int(label), []).append(index)
    return [groups[key] for key in sorted(groups)]
