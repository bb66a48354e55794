"""Checks and transforms on scores (group name -> one importance per unit)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import torch

from prunekit.core.groups import Group, Scores
from prunekit.errors import ScoreError

Normalization = Literal["none", "max", "sum", "l2", "mean"]
NORMALIZATIONS: tuple[Normalization, ...] = ("none", "max", "sum", "l2", "mean")


def check_scores(scores: Scores, groups: Sequence[Group], *, allow_nan: bool = False) -> None:
    """Raise :class:`ScoreError` naming the group (and unit) if a score is missing, has the
    wrong shape, or is NaN or infinite."""
    for group in groups:
        if group.name not in scores:
            raise ScoreError(f"no scores for group {group.name!r}")
        s = scores[group.name]
        if tuple(s.shape) != (group.n_units,):
            raise ScoreError(
                f"scores of group {group.name!r} have shape {tuple(s.shape)}, "
                f"expected ({group.n_units},)"
            )
        bad = torch.isinf(s) if allow_nan else ~torch.isfinite(s)
        if bad.any():
            index = int(bad.nonzero()[0, 0])
            raise ScoreError(
                f"scores of group {group.name!r} contain {s[index].item()} at unit {index} "
                f"({int(bad.sum())} of {s.numel()} units are not finite); check the estimator "
                "and its data (a diverged model or an empty batch gives NaN)"
            )


def normalize_scores(
    scores: Scores,
    how: Normalization = "none",
    *,
    exclude: Mapping[str, torch.Tensor] | None = None,
) -> Scores:
    """Rescale each group's scores so groups compare on one scale in a global selection.

    ``max`` divides by the group's largest score, ``sum`` by its total, ``l2`` by its Euclidean
    norm, ``mean`` by its mean; ``none`` returns the scores unchanged. A group of all-zero scores
    stays zero. ``exclude`` (group name -> boolean per unit) leaves units out of the scale: a
    schedule passes the units its masks already removed, so that a masked model's scores are
    normalised as the physically pruned model's would be (the zeros of removed units would
    otherwise shrink a group's mean and inflate its remaining scores in proportion to how much
    of it is gone).
    """
    if how not in NORMALIZATIONS:
        raise ValueError(f"unknown normalisation {how!r}; choose from {NORMALIZATIONS}")
    if how == "none":
        return dict(scores)
    out: Scores = {}
    for name, s in scores.items():
        s = s.float()
        present = s
        if exclude is not None and name in exclude:
            present = s[~exclude[name].to(s.device)]
        if present.numel() == 0:
            out[name] = s
            continue
        scale = {
            "max": lambda s: s.abs().max(),
            "sum": lambda s: s.abs().sum(),
            "l2": lambda s: s.norm(),
            "mean": lambda s: s.abs().mean(),
        }[how](present)
        out[name] = s / scale if scale > 0 else s
    return out
