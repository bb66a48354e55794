"""Saving and loading width-pruned Hugging Face models, without pickle.

Where the config can describe the pruned shapes (LLaMA-family: ``num_attention_heads``,
``num_key_value_heads`` and ``intermediate_size`` with an explicit ``head_dim``; BERT with only
its MLP pruned), ``save_pretrained`` / ``from_pretrained`` round-trip as they are. A config
cannot always do that: BERT derives its head size as ``hidden_size / num_attention_heads``, so
a BERT with fewer heads has no ``BertConfig``; a LLaMA config refuses a head count that does
not divide ``hidden_size``. For every case :func:`save_pruned` writes the ``save_pretrained``
directory plus the surgery plan (``prunekit_plan.json``), and :func:`load_pruned` builds the
dense architecture from the saved config with the plan's original widths restored, replays the
plan (:func:`prunekit.surgery.rebuild`) and loads the safetensors weights into it.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunekit.compat.torchvision_shim import ensure_torchvision_ops
from prunekit.errors import SaveFileError
from prunekit.surgery import Plan, rebuild

PLAN_FILE = "prunekit_plan.json"


def config_describes_shapes(model: nn.Module) -> bool:
    """Whether ``type(model)(model.config)`` has exactly the model's tensor shapes (built on the
    meta device, so nothing is allocated): then ``from_pretrained`` rebuilds it."""
    config = getattr(model, "config", None)
    if config is None:
        return False
    try:
        with torch.device("meta"):
            fresh = type(model)(copy.deepcopy(config))
    except Exception:  # a config the architecture refuses: any exception type
        return False
    expected = {k: tuple(v.shape) for k, v in fresh.state_dict().items()}
    return expected == {k: tuple(v.shape) for k, v in model.state_dict().items()}


def save_pruned(model: nn.Module, directory: str | Path, plan: Plan) -> Path:
    """``model.save_pretrained(directory)`` plus ``plan`` as JSON; :func:`load_pruned` reads
    both back. Returns the directory."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    save = getattr(model, "save_pretrained", None)
    if not callable(save):
        raise SaveFileError(
            f"{type(model).__name__} has no save_pretrained; use prunekit.io.save for models "
            "that are not Hugging Face models"
        )
    save(out)
    (out / PLAN_FILE).write_text(plan.to_json(indent=1))
    return out


def _dense_config(directory: Path, plan: Plan) -> Any:
    """The saved config with every field surgery changed set back to its original value."""
    ensure_torchvision_ops()  # transformers imports torchvision when it is installed
    from transformers import AutoConfig

    values = json.loads((directory / "config.json").read_text())
    for key, change in plan.modules.get("", {}).items():
        if key.startswith("config."):
            values[key.removeprefix("config.")] = change[0]
    model_type = values.pop("model_type", None)
    if not model_type:
        raise SaveFileError(f"{directory / 'config.json'} names no model_type")
    return AutoConfig.for_model(model_type, **values)


def _architecture(config: Any, directory: Path) -> type[nn.Module]:
    import transformers

    names = getattr(config, "architectures", None) or []
    cls = getattr(transformers, names[0], None) if names else None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise SaveFileError(
            f"{directory / 'config.json'} names no transformers architecture ({names!r})"
        )
    return cls


def _weights(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    index = directory / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    else:
        shards = ["model.safetensors"]
    state: dict[str, torch.Tensor] = {}
    for shard in shards:
        path = directory / shard
        if not path.is_file():
            raise SaveFileError(f"weights file {str(path)!r} is missing")
        state.update(load_file(str(path)))
    return state


def _load_weights(model: nn.Module, state: dict[str, torch.Tensor], directory: Path) -> None:
    """Load ``state``; a missing key is allowed only for a tensor tied to a loaded one."""
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:
        raise SaveFileError(
            f"the weights in {str(directory)!r} do not fit the plan: {err}"
        ) from err
    names: dict[int, list[str]] = {}
    for name, tensor in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(tensor), []).append(name)
    loaded = set(state)
    untied = [
        key
        for key in missing
        if not any(other in loaded for ids in names.values() if key in ids for other in ids)
    ]
    if unexpected or untied:
        raise SaveFileError(
            f"the weights in {str(directory)!r} do not match the architecture rebuilt from the "
            f"plan: unexpected {sorted(unexpected)[:5]}, missing {untied[:5]}"
        )


def load_pruned(directory: str | Path) -> nn.Module:
    """The model :func:`save_pruned` wrote, in eval mode: the dense architecture of the saved
    config (original widths restored from the plan), the plan replayed, the weights loaded."""
    path = Path(directory)
    plan_file = path / PLAN_FILE
    if not plan_file.is_file():
        raise SaveFileError(
            f"{str(path)!r} has no {PLAN_FILE}; a directory without a plan loads with "
            "from_pretrained"
        )
    plan = Plan.from_json(plan_file.read_text())
    config = _dense_config(path, plan)
    dense = _architecture(config, path)(config)
    model = rebuild(dense, plan)
    del dense
    _load_weights(model, _weights(path), path)
    return model.eval()
