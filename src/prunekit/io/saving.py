"""Write a (masked) model to a directory: ``model.safetensors`` + ``prunekit.json``, no pickle.

The weights file holds each tensor's effective value under its plain name (``fc1.weight``, the
value the forward pass sees), each mask under ``__mask__/<name>`` (as ``bool`` when it is 0/1) and,
where the effective value is not enough to restore training state, the unmasked original under
``__original__/<name>``: for soft masks (re-applying a soft mask to a masked value would apply it
twice), for tensors tied to another name, and on request (``keep_originals=True``, e.g. to
``remove_masks`` after loading or to rewind lottery tickets). Sparse tensors are stored compressed
and masks that a tensor's zeros imply are left out (:mod:`prunekit.io.compact`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Set
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from prunekit._version import __version__
from prunekit.errors import ConfigError, SaveFileError
from prunekit.formats import DENSE, Entry
from prunekit.io.atomic import fsync_file, sha256_of, switch_directory
from prunekit.io.compact import compact, implied_masks
from prunekit.io.digests import tensor_digest
from prunekit.io.metadata import (
    FORMAT_NAME,
    FORMAT_VERSION,
    IMPLIED,
    MASK_PREFIX,
    METADATA_FILE,
    ORIGINAL_PREFIX,
    PACKED,
    WEIGHTS_FILE,
    SaveMetadata,
    TensorInfo,
    check_arch,
    dtype_name,
    to_json_object,
)
from prunekit.io.state import ModelState, is_binary, read_state

_ViewKey = tuple[str, int, int, tuple[int, ...], tuple[int, ...], torch.dtype]


def _view_key(tensor: Tensor) -> _ViewKey | None:
    """Identifies tensors that are the very same view of the same memory (tied weights)."""
    if tensor.device.type == "meta" or tensor.numel() == 0:
        return None
    return (
        str(tensor.device),
        tensor.untyped_storage().data_ptr(),
        int(tensor.storage_offset()),
        tuple(tensor.shape),
        tuple(tensor.stride()),
        tensor.dtype,
    )


def _pack(named: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Tensors to write (no two sharing memory, as safetensors requires) and each name's key.

    Identical views are written once under the first name; partial overlaps are copied.
    """
    first: dict[_ViewKey, str] = {}
    written: dict[str, Tensor] = {}
    keys: dict[str, str] = {}
    storages: set[int] = set()
    for name, tensor in named.items():
        if tensor.device.type == "meta":
            raise ConfigError(f"tensor {name!r} is on the meta device and has no values to save")
        view = _view_key(tensor)
        if view is not None and view in first:
            keys[name] = first[view]
            continue
        if view is not None:
            first[view] = name
        data = tensor.detach().to("cpu").contiguous()
        if data.numel() > 0:
            storage = data.untyped_storage().data_ptr()
            if storage in storages:
                data = data.clone()
            storages.add(data.untyped_storage().data_ptr())
        written[name] = data
        keys[name] = name
    return written, keys


def _entries(
    state: ModelState, keep_originals: bool
) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor]]:
    """Effective values, masks and originals to save, by tensor name."""
    tensors = {name: state.effective(name) for name in state.stored}
    masks: dict[str, Tensor] = {}
    originals: dict[str, Tensor] = {}
    shared = state.shared()
    for name, slot in state.masked.items():
        mask = slot.mask()
        binary = is_binary(mask)
        masks[name] = mask.to(torch.bool) if binary else mask
        if keep_originals or not binary or name in shared:
            originals[name] = state.stored[name]
    return tensors, masks, originals


def _infos(
    values: Mapping[str, Tensor],
    keys: Mapping[str, str],
    prefix: str,
    loaded: Mapping[str, Tensor],
    entries: Mapping[str, Entry],
    implied: Set[str] = frozenset(),
    packed: Set[str] = frozenset(),
) -> Mapping[str, TensorInfo]:
    """Each entry's record: its key, how that key is stored, and the digest of the values it
    loads back as under its own name."""
    infos = {}
    for name, t in values.items():
        key = keys[prefix + name]
        digest = tensor_digest(prefix + name, loaded[key])
        entry = entries.get(key)
        encoding = IMPLIED if name in implied else entry.format if entry else DENSE
        encoding = PACKED if key in packed else encoding
        blocksize = entry.blocksize if entry else None
        infos[name] = TensorInfo(
            tuple(t.shape), dtype_name(t.dtype), key, digest, encoding, blocksize
        )
    return MappingProxyType(infos)


def _target_directory(path: str | Path) -> Path:
    directory = Path(path)
    if directory.exists() and not directory.is_dir():
        raise SaveFileError(f"{directory}: exists and is not a directory; save() writes one")
    directory.parent.mkdir(parents=True, exist_ok=True)
    return directory


def _write_json(text: str, file: Path) -> None:
    file.write_text(text, encoding="utf-8")


def _parse_plan(plan: Mapping[str, Any] | str | None) -> Mapping[str, Any] | None:
    if not isinstance(plan, str):
        return plan
    try:
        parsed = json.loads(plan)
    except ValueError as err:
        raise ConfigError(f"plan is not valid JSON text: {err}") from err
    if not isinstance(parsed, dict):
        raise ConfigError(f"plan JSON must be an object, got {type(parsed).__name__}")
    return parsed


def save(
    model: nn.Module,
    path: str | Path,
    *,
    arch: Mapping[str, Any] | None = None,
    plan: Mapping[str, Any] | str | None = None,
    extra: Mapping[str, Any] | None = None,
    keep_originals: bool = False,
) -> Path:
    """Save ``model`` (masks included) to the directory ``path`` and return that directory.

    Args:
        model: the model; its masks must be prunekit masks (no other parametrizations).
        path: directory to write ``model.safetensors`` and ``prunekit.json`` into (created if
            needed). An earlier save there is replaced all at once: the new save is written
            to a hidden sibling directory that is then renamed into place, so a crash leaves
            the previous save or the new one, both loadable; other files in the directory are
            carried over. Concurrent saves to one path take turns (a lock on the parent
            directory, :mod:`prunekit.io.locking`): the last one to finish is what remains.
        arch: how :func:`prunekit.io.load` rebuilds the architecture without a model:
            ``{"model": <name in prunekit.models>, "kwargs": {...}}``.
        plan: the structural pruning plan that gives the saved shapes: JSON data or JSON text
            (``result.plan.to_json()``).
        extra: free JSON metadata, returned by :func:`prunekit.io.read_metadata`.
        keep_originals: also keep the unmasked values of every masked tensor (by default only
            where they are needed to reproduce the model; see the module docstring).

    Mappings are stored as JSON, so tuples come back as lists and keys as strings.
    """
    arch_json = check_arch(arch)
    plan_json = to_json_object(_parse_plan(plan), "plan")
    extra_json = to_json_object(extra, "extra")
    state = read_state(model)
    tensors, masks, originals = _entries(state, keep_originals)
    named = {
        **tensors,
        **{MASK_PREFIX + n: m for n, m in masks.items()},
        **{ORIGINAL_PREFIX + n: t for n, t in originals.items()},
    }
    for tensor in named.values():
        dtype_name(tensor.dtype)  # refuse unsupported dtypes before writing anything
    written, keys = _pack(named)
    implied = implied_masks(tensors, masks)
    unstored = {MASK_PREFIX + name for name in implied}
    needed = {keys[n] for n in named if n not in unstored}
    packed = {
        keys[MASK_PREFIX + n]
        for n, m in masks.items()
        if n not in implied and m.dtype == torch.bool and m.ndim and m.numel()
    }
    stored, entries, loaded = compact(written, set(written) - needed, packed)
    infos = (
        _infos(tensors, keys, "", loaded, entries),
        _infos(masks, keys, MASK_PREFIX, loaded, entries, implied, packed),
        _infos(originals, keys, ORIGINAL_PREFIX, loaded, entries),
    )
    directory = _target_directory(path)

    def write(staging: Path) -> None:
        weights = staging / WEIGHTS_FILE
        save_file(stored, weights, metadata={"format": "pt", "prunekit": FORMAT_NAME})
        fsync_file(weights)
        meta = SaveMetadata(
            format_version=FORMAT_VERSION,
            prunekit_version=__version__,
            sha256=sha256_of(weights),
            tensors=infos[0],
            masks=infos[1],
            originals=infos[2],
            arch=arch_json,
            plan=plan_json,
            extra=extra_json,
        )
        _write_json(meta.to_json(), staging / METADATA_FILE)
        fsync_file(staging / METADATA_FILE)

    switch_directory(directory, write, {WEIGHTS_FILE, METADATA_FILE})
    return directory
