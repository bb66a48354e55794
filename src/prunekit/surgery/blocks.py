"""Block surgery: replace whole residual blocks by the identity, and replay that from a plan.

A removed block becomes an :class:`IdentityBlock` at the same module path: it returns its
hidden-states input (wrapped in a tuple of the block's length when the block returned a tuple),
has no parameters or buffers, and accepts whatever arguments the block accepted (attention
masks, rotary tables, caches are ignored). Module lists keep their length, so indices, names
and per-layer cache slots of the other blocks do not move.

The plan records each removed block as ``{"replaced_by": "identity", "type": class name,
"tuple_length": 0 or n}`` under ``plan.blocks`` (see :class:`~prunekit.surgery.plan.Plan`);
:func:`replace_blocks` and :func:`blocks_memo` replay it on the original architecture.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from prunekit.errors import SaveFileError, UnsupportedLayerError
from prunekit.graph.blocks import HIDDEN_KWARGS, ResidualBlock, hidden_input

BlockEntries = Mapping[str, Mapping[str, Any]]
"""Plan entries of removed blocks: module path -> ``{"replaced_by", "type", "tuple_length"}``."""

REPLACEMENTS: tuple[str, ...] = ("identity",)
"""What a removed block can be replaced by (replacing a downsampling block by its shortcut is
not implemented)."""


class IdentityBlock(nn.Module):
    """Stands in for a removed residual block: returns the hidden states it receives.

    ``replaces`` names the removed block's class (shown in ``repr``). Plain public attributes of
    the removed block (ints, floats, strings, bools, e.g. a Hugging Face layer's
    ``attention_type``) are copied, so a caller that reads them keeps working.
    """

    def __init__(self, replaces: str, tuple_length: int = 0) -> None:
        super().__init__()
        self.replaces = replaces
        self.tuple_length = tuple_length

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        hidden = hidden_input(args, kwargs)
        if hidden is None:
            raise UnsupportedLayerError(
                f"IdentityBlock (for a removed {self.replaces}) received no hidden states "
                f"(first positional tensor or one of {HIDDEN_KWARGS})"
            )
        if self.tuple_length:
            return (hidden, *([None] * (self.tuple_length - 1)))
        return hidden

    def extra_repr(self) -> str:
        return f"replaces={self.replaces}"

    @classmethod
    def for_block(cls, block: nn.Module, tuple_length: int = 0) -> IdentityBlock:
        """The stand-in for ``block``, with its plain public attributes copied."""
        stand_in = cls(type(block).__name__, tuple_length)
        own = {"training", "replaces", "tuple_length"}
        for key, value in vars(block).items():
            plain = isinstance(value, (bool, int, float, str))
            if plain and not key.startswith("_") and key not in own:
                setattr(stand_in, key, value)
        return stand_in


def block_entry(block: ResidualBlock) -> dict[str, Any]:
    """The plan entry of removing ``block``."""
    return {"replaced_by": "identity", "type": block.type, "tuple_length": block.tuple_length}


def _checked(model: nn.Module, entries: BlockEntries) -> dict[str, nn.Module]:
    """The module at every entry's path, after checking that it is what the plan says."""
    found: dict[str, nn.Module] = {}
    for name, entry in entries.items():
        if entry.get("replaced_by") not in REPLACEMENTS:
            raise SaveFileError(
                f"plan block {name!r}: replaced_by {entry.get('replaced_by')!r} is not one of "
                f"{REPLACEMENTS}"
            )
        if not name:
            raise SaveFileError("a plan cannot replace the whole model by the identity")
        try:
            module = model.get_submodule(name)
        except AttributeError as err:
            raise SaveFileError(f"the plan names block {name!r}, which the model lacks") from err
        if type(module).__name__ != entry.get("type"):
            raise SaveFileError(
                f"block {name!r} is a {type(module).__name__}, the plan expects "
                f"{entry.get('type')}: the plan was made for a different model"
            )
        found[name] = module
    nested = [a for a in found for b in found if a.startswith(b + ".")]
    if nested:
        raise SaveFileError(f"plan block {nested[0]!r} lies inside another removed block")
    return found


def _stand_in(module: nn.Module, entry: Mapping[str, Any]) -> IdentityBlock:
    return IdentityBlock.for_block(module, int(entry.get("tuple_length", 0)))


def blocks_memo(model: nn.Module, entries: BlockEntries) -> dict[int, Any]:
    """A ``copy.deepcopy`` memo that makes the copy of ``model`` hold an :class:`IdentityBlock`
    wherever ``entries`` removes a block (the removed blocks' tensors are never copied)."""
    return {
        id(module): _stand_in(module, entries[name])
        for name, module in _checked(model, entries).items()
    }


def replace_blocks(model: nn.Module, entries: BlockEntries) -> None:
    """Replace, in ``model`` itself, every block that ``entries`` removes (all checked first)."""
    found = _checked(model, entries)
    for name, module in found.items():
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, attr, _stand_in(module, entries[name]))
