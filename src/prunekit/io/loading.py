"""Load a directory written by :func:`prunekit.io.save` into a model, without unpickling.

Everything is checked before the model is touched (file digest, keys, shapes, dtypes, masks), so
a failure leaves the model exactly as it was. Then masks the model carried are removed, the saved
values are loaded with ``load_state_dict`` and the saved masks are applied.

A save with a structural ``plan`` holds pruned shapes: the architecture must first be cut to
them, which is the job of a ``rebuild_hook`` (provided by ``prunekit.surgery``). The hook runs
after the files are verified and before the shape checks, which run on the model it returns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

from prunekit.errors import ConfigError, PrunekitError, SaveFileError
from prunekit.io.atomic import sha256_of
from prunekit.io.compact import expand
from prunekit.io.digests import tensor_digest
from prunekit.io.locking import locked
from prunekit.io.metadata import (
    MASK_PREFIX,
    METADATA_FILE,
    ORIGINAL_PREFIX,
    WEIGHTS_FILE,
    SaveMetadata,
    TensorInfo,
    dtype_name,
)
from prunekit.io.metadata_read import read_metadata_unlocked, save_directory
from prunekit.io.state import ModelState, read_state
from prunekit.masks.parametrize import apply_masks, remove_masks

RebuildHook = Callable[[nn.Module, Mapping[str, Any]], nn.Module]
"""Turns a model of the original architecture into one of the plan's pruned shapes."""


def _listing(names: Iterable[str], limit: int = 5) -> str:
    """``'a', 'b' and 3 more``; entries that are already descriptions are not quoted again."""
    ordered = sorted(names)
    shown = ", ".join(n if n.startswith("'") else repr(n) for n in ordered[:limit])
    return shown + (f" and {len(ordered) - limit} more" if len(ordered) > limit else "")


def _check_keys(file: Path, meta: SaveMetadata, stored: Mapping[str, Tensor]) -> None:
    expected = meta.file_keys()
    if missing := expected - stored.keys():
        raise SaveFileError(f"{file}: missing key(s) {_listing(missing)} listed in {METADATA_FILE}")
    if extra := stored.keys() - expected:
        raise SaveFileError(f"{file}: unexpected key(s) {_listing(extra)} not in {METADATA_FILE}")


def _check_file_tensors(file: Path, meta: SaveMetadata, tensors: Mapping[str, Tensor]) -> None:
    records: list[tuple[str, TensorInfo]] = [
        *meta.tensors.items(),
        *((f"mask of {n}", i) for n, i in meta.masks.items()),
        *((f"original of {n}", i) for n, i in meta.originals.items()),
    ]
    for what, info in records:
        value = tensors[info.key]
        if tuple(value.shape) != info.shape or str(value.dtype) != f"torch.{info.dtype}":
            raise SaveFileError(
                f"{file}: key {info.key!r} ({what}) is {tuple(value.shape)} {value.dtype}, "
                f"{METADATA_FILE} says {info.shape} {info.dtype}"
            )
    _check_digests(file, meta, tensors)


def _check_digests(file: Path, meta: SaveMetadata, tensors: Mapping[str, Tensor]) -> None:
    """Refuse values that are not the ones saved under their name (swapped or edited entries)."""
    labelled = [
        *((n, i) for n, i in meta.tensors.items()),
        *((MASK_PREFIX + n, i) for n, i in meta.masks.items()),
        *((ORIGINAL_PREFIX + n, i) for n, i in meta.originals.items()),
    ]
    wrong = [
        label
        for label, info in labelled
        if info.sha256 is not None and tensor_digest(label, tensors[info.key]) != info.sha256
    ]
    if wrong:
        raise SaveFileError(
            f"{file}: the values of {_listing(wrong)} are not the ones saved under that name "
            f"(per-tensor sha256 in {METADATA_FILE} differs): entries were swapped or edited"
        )


def read_weights(directory: Path, meta: SaveMetadata) -> dict[str, Tensor]:
    """The values of every key of ``meta`` (sparse ones decoded, implied masks recomputed),
    after checking the file's digest and keys and the values' shapes, dtypes and digests."""
    file = directory / WEIGHTS_FILE
    if not file.is_file():
        raise SaveFileError(f"{file}: file not found")
    digest = sha256_of(file)
    if digest != meta.sha256:
        raise SaveFileError(
            f"{file}: sha256 is {digest}, {METADATA_FILE} records {meta.sha256}; the file is "
            "corrupt, truncated or from another save"
        )
    try:
        stored = load_file(file)
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise SaveFileError(f"{file}: not a readable safetensors file: {err}") from err
    _check_keys(file, meta, stored)
    tensors = expand(file, meta, stored)
    _check_file_tensors(file, meta, tensors)
    return tensors


def _single_float_dtype(dtypes: Iterable[torch.dtype]) -> torch.dtype | None:
    floats = {d for d in dtypes if d.is_floating_point}
    return floats.pop() if len(floats) == 1 else None


def build_from_arch(directory: Path, meta: SaveMetadata) -> nn.Module:
    """Rebuild the saved architecture with ``prunekit.models.build_model``."""
    file = directory / METADATA_FILE
    if meta.arch is None:
        raise SaveFileError(
            f"{file}: no 'arch' recorded, so the model cannot be rebuilt; pass model="
        )
    try:
        from prunekit.models import build_model
    except ImportError as err:
        raise SaveFileError(f"{file}: rebuilding from 'arch' needs prunekit.models: {err}") from err
    name = meta.arch["model"]
    try:
        model = build_model(name, **meta.arch.get("kwargs", {}))
    except (PrunekitError, TypeError) as err:
        raise SaveFileError(f"{file}: cannot rebuild arch {name!r}: {err}") from err
    saved = _single_float_dtype(getattr(torch, i.dtype) for i in meta.tensors.values())
    built = _single_float_dtype(t.dtype for t in model.state_dict().values())
    if saved is not None and built is not None and saved != built:
        model = model.to(saved)
    return model


def _target_state(model: nn.Module, file: Path) -> ModelState:
    try:
        return read_state(model)
    except ConfigError as err:
        raise SaveFileError(f"{file}: cannot load into this model: {err}") from err


def check_model(file: Path, meta: SaveMetadata, state: ModelState) -> None:
    """Raise unless the model has exactly the saved tensors, with their shapes and dtypes.

    The message lists every offending name (up to a few), not just the first.
    """
    ours, theirs = set(meta.tensors), set(state.stored)
    if theirs != ours:
        parts = []
        if missing := theirs - ours:
            parts.append(f"the model has tensor(s) {_listing(missing)} that the file lacks")
        if extra := ours - theirs:
            parts.append(f"the file has tensor(s) {_listing(extra)} that the model lacks")
        raise SaveFileError(f"{file}: {'; '.join(parts)}; was it saved from another architecture?")
    shapes, dtypes = [], []
    for name, info in sorted(meta.tensors.items()):
        tensor = state.stored[name]
        if tuple(tensor.shape) != info.shape:
            shapes.append(f"{name!r} (file {info.shape}, model {tuple(tensor.shape)})")
        elif dtype_name(tensor.dtype) != info.dtype:
            dtypes.append(f"{name!r} (file {info.dtype}, model {dtype_name(tensor.dtype)})")
    if shapes:
        hint = "" if meta.plan is None else " after the rebuild hook ran"
        raise SaveFileError(f"{file}: shape mismatch{hint} for {_listing(shapes)}")
    if dtypes:
        raise SaveFileError(
            f"{file}: dtype mismatch for {_listing(dtypes)}; convert the model first "
            "(e.g. model.to(torch.float32))"
        )


def _module_and_attr(model: nn.Module, name: str, file: Path) -> tuple[nn.Module, str]:
    prefix, _, attr = name.rpartition(".")
    try:
        module = model.get_submodule(prefix)
    except AttributeError as err:
        raise SaveFileError(f"{file}: masked tensor {name!r} is not a module attribute") from err
    if not isinstance(getattr(module, attr, None), Tensor):
        raise SaveFileError(f"{file}: masked tensor {name!r} is not a module attribute")
    return module, attr


def masks_to_apply(
    file: Path, model: nn.Module, meta: SaveMetadata, tensors: Mapping[str, Tensor]
) -> dict[str, Tensor]:
    """The saved masks in the tensors' dtypes, one per (module, attribute) the model holds.

    A module reachable under two names (a shared submodule) is masked once; its masks must agree.
    """
    chosen: dict[tuple[int, str], tuple[str, Tensor]] = {}
    for name, info in meta.masks.items():
        module, attr = _module_and_attr(model, name, file)
        mask = tensors[info.key].to(dtype=getattr(torch, meta.tensors[name].dtype))
        slot = (id(module), attr)
        if slot not in chosen:
            chosen[slot] = (name, mask)
        elif not torch.equal(chosen[slot][1], mask):
            raise SaveFileError(
                f"{file}: masks of {chosen[slot][0]!r} and {name!r} differ, but in this model "
                "they are the same tensor"
            )
    return dict(chosen.values())


def load(
    path: str | Path,
    model: nn.Module | None = None,
    *,
    rebuild_hook: RebuildHook | None = None,
) -> nn.Module:
    """Load the save directory ``path`` into ``model`` (or a model rebuilt from its ``arch``).

    Args:
        path: a directory written by :func:`prunekit.io.save`.
        model: the model to load into, in place; it ends up with the saved values and exactly
            the saved masks. ``None`` rebuilds it with ``prunekit.models.build_model``.
        rebuild_hook: cuts the architecture to the shapes of the save's structural plan;
            required when the save has a plan. It is called with the model and the plan after
            the files are verified and may change the model in place; the shape checks then run
            on the model it returns.

    Returns:
        The loaded model (``model`` itself unless a rebuild hook returned another object).

    Raises:
        SaveFileError: a file is missing or corrupt, or does not match the model; raised before
            the model is changed (by this function: a rebuild hook has run by then).
    """
    with locked(Path(path), shared=True):
        directory = save_directory(path)
        meta = read_metadata_unlocked(directory)
        tensors = read_weights(directory, meta)
    weights_file = directory / WEIGHTS_FILE
    if meta.plan is not None and rebuild_hook is None:
        raise SaveFileError(
            f"{directory / METADATA_FILE}: the save has a structural plan (pruned shapes); loading "
            "it needs prunekit.surgery to rebuild them: pass its rebuild hook as rebuild_hook="
        )
    target = model if model is not None else build_from_arch(directory, meta)
    if meta.plan is not None and rebuild_hook is not None:
        target = rebuild_hook(target, meta.plan)
        if not isinstance(target, nn.Module):
            raise ConfigError(f"rebuild_hook returned {type(target).__name__}, not an nn.Module")
    check_model(weights_file, meta, _target_state(target, weights_file))
    masks = masks_to_apply(weights_file, target, meta, tensors)
    values = {name: tensors[meta.originals.get(name, i).key] for name, i in meta.tensors.items()}
    remove_masks(target)
    target.load_state_dict(values, strict=True)
    apply_masks(target, masks)
    return target
