"""Physical surgery: remove selected units, record a plan, rebuild from a plan, verify.

``apply_surgery(model, groups, selection)`` returns a pruned copy and its :class:`Plan`;
``verify(original, pruned, groups, selection, example_inputs)`` proves surgery equals masking;
``rebuild(original, plan)`` re-creates the pruned shapes (for loading without pickle);
``remove_residual_blocks`` / ``verify_blocks`` do the same for whole residual blocks.
:mod:`prunekit.pruning` composes these mechanisms with scoring and selection.
"""

from prunekit.surgery.apply import apply_plan, apply_surgery, rebuild, rebuild_hook
from prunekit.surgery.blocks import IdentityBlock
from prunekit.surgery.layers import remove_residual_blocks, verify_blocks
from prunekit.surgery.plan import Plan, TensorCut, make_plan
from prunekit.surgery.verify import (
    DEFAULT_ATOL,
    UnverifiableGroupError,
    VerificationError,
    VerificationReport,
    masked_copy,
    verify,
)

__all__ = [
    "DEFAULT_ATOL",
    "IdentityBlock",
    "Plan",
    "TensorCut",
    "UnverifiableGroupError",
    "VerificationError",
    "VerificationReport",
    "apply_plan",
    "apply_surgery",
    "make_plan",
    "masked_copy",
    "rebuild",
    "rebuild_hook",
    "remove_residual_blocks",
    "verify",
    "verify_blocks",
]
