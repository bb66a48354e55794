"""The plain data shared by every stage: unit views, groups, scores, selections, masks."""

from prunekit.core.groups import (
    Group,
    Masks,
    Member,
    Scores,
    Selection,
    get_tensor,
    group_tensors,
    selection_to_masks,
)
from prunekit.core.scores import check_scores, normalize_scores
from prunekit.core.selection import SelectionConfig, select
from prunekit.core.views import AxisView, BlockView, ElementView, MatrixLayout, UnitView

__all__ = [
    "AxisView",
    "BlockView",
    "ElementView",
    "Group",
    "Masks",
    "MatrixLayout",
    "Member",
    "Scores",
    "Selection",
    "SelectionConfig",
    "UnitView",
    "check_scores",
    "get_tensor",
    "group_tensors",
    "normalize_scores",
    "select",
    "selection_to_masks",
]
