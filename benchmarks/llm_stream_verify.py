"""Does a streamed LLM output directory load with ``from_pretrained`` and compute what the
streaming loader computes? ``python benchmarks/llm_streaming.py verify OUT [--source SRC]``.

:func:`verify` loads the directory with ``AutoModelForCausalLM.from_pretrained`` (bf16) and
checks it: nothing missing or unexpected, every tensor equal to its shard, every block Linear
with exactly ``round(sparsity * in)`` zeros in each output row (Wanda, magnitude) or
``round(sparsity * numel)`` in the layer (SparseGPT chooses its mask over blocks of columns
across all rows), kept weights equal to the
source's (weight pruning that does not update them: Wanda, magnitude) or the source sliced by
``prunekit_plan.json`` (width pruning), finite logits on a few tokens equal to a block-by-block
forward from the shards (prunekit's streaming loader; the loaded model is freed first, so there
are never two copies in memory), and its memory at each step.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from llm_streaming import CALIB


def _memory() -> dict[str, float]:
    """This process's resident memory in GiB: the peak (``VmHWM``) and the current one, split
    into anonymous memory and file pages (a memory-mapped safetensors file counts as the latter)."""
    fields = {"VmHWM": "peak_gib", "VmRSS": "rss_gib", "RssAnon": "anon_gib", "RssFile": "file_gib"}
    found = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in fields:
            found[fields[key]] = round(int(value.split()[0]) / 2**20, 3)
    return found


def _block_linears(model: Any) -> dict[str, int]:
    """Every block Linear's weight name -> its input width."""
    from torch import nn

    from prunekit.llm.blocks import find_blocks

    stack = find_blocks(model)
    return {
        f"{stack.name(i)}.{name}.weight": int(module.in_features)
        for i, block in enumerate(stack.blocks)
        for name, module in block.named_modules()
        if isinstance(module, nn.Linear)
    }


def _check_tensors(
    model: Any, out: Path, source: Path | None, sparsity: float, masks_only: bool
) -> dict[str, Any]:
    """Compare the loaded model with the shards one tensor at a time (never a second copy)."""
    import torch

    from prunekit.llm.shards import ShardedCheckpoint

    stored = ShardedCheckpoint(out)
    dense = ShardedCheckpoint(source) if source is not None else None
    state = model.state_dict()
    linears = _block_linears(model)
    if set(state) != set(stored.names()):
        raise SystemExit(
            f"{out}: the loaded model and the shards name different tensors: "
            f"{sorted(set(state) ^ set(stored.names()))[:5]}"
        )
    plan_file = out / "prunekit_plan.json"  # width pruning: the rows / columns it removed
    removed = json.loads(plan_file.read_text())["tensors"] if plan_file.is_file() else {}
    bad: list[str] = []
    rows = rows_exact = layers_exact = 0
    for name in stored.names():
        value = state[name]
        if value.dtype != torch.bfloat16 or not torch.equal(value, stored.load([name])[name]):
            bad.append(f"{name}: differs from its shard")
        src = dense.load([name])[name] if dense is not None else None
        for cut in removed.get(name, {}).get("dims", []) if src is not None else []:
            kept_index = sorted(set(range(src.shape[cut["dim"]])) - set(cut["removed"]))
            src = src.index_select(cut["dim"], torch.tensor(kept_index))
        if name in linears:
            zeros = (value == 0).sum(dim=1)
            rows += int(zeros.numel())
            rows_exact += int((zeros == round(sparsity * linears[name])).sum())
            layers_exact += int(int(zeros.sum()) == round(sparsity * value.numel()))
            kept = value != 0
            if src is not None and masks_only and not torch.equal(value[kept], src[kept]):
                bad.append(f"{name}: kept weights differ from the source")
            if src is not None and removed and not torch.equal(value, src):
                bad.append(f"{name}: not the source's kept rows and columns")
        elif src is not None and not torch.equal(value, src):
            bad.append(f"{name}: not a block Linear, yet changed")
    return {
        "tensors": len(state),
        "tensors_equal_to_shards": len(state) - sum("shard" in b for b in bad),
        "block_linears": len(linears),
        "rows": rows,
        "rows_with_exact_zeros": rows_exact,
        "layers_with_exact_zeros": layers_exact,
        "sliced_by_plan": len(removed) if dense is not None else 0,
        "problems": bad[:10],
    }


def _streamed_logits(directory: Path, ids: Any, dtype: Any) -> Any:
    """The logits of ``ids`` [1, seq] from the shards in ``directory``, one block in memory at a
    time (prunekit's streaming loader: meta skeleton, ``ShardedCheckpoint``, ``advance``)."""
    import torch

    from prunekit.llm.blocks import advance, capture_block_inputs, find_blocks
    from prunekit.llm.shards import ShardedCheckpoint
    from prunekit.llm.stream_output import block_tensors
    from prunekit.llm.stream_skeleton import build_skeleton, check_coverage, materialise, release

    model, _ = build_skeleton(directory, dtype)
    checkpoint = ShardedCheckpoint(directory)
    where = check_coverage(model, checkpoint)
    stack = find_blocks(model)
    outside = {n: s for n, s in where.items() if not n.startswith(stack.prefix + ".")}
    materialise(model, checkpoint.load(sorted(set(outside.values())), dtype))
    with torch.no_grad():
        inputs = capture_block_inputs(model, stack, ids)
        for index, block in enumerate(stack.blocks):
            materialise(model, block_tensors(stack, index, checkpoint, dtype))
            advance(block, inputs)
            release(block)
        hidden = model.get_decoder().norm(inputs.hidden)
        return model.get_output_embeddings()(hidden).float()


def verify(
    out: Path, source: Path | None, sparsity: float, masks_only: bool, n_tokens: int
) -> dict[str, Any]:
    """Load ``out`` with ``from_pretrained`` (bf16) and check it (module docstring)."""
    import gc

    import torch

    from prunekit.compat.torchvision_shim import ensure_torchvision_ops

    ensure_torchvision_ops()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    row: dict[str, Any] = {"out": str(out), "imports": _memory()}
    start = time.perf_counter()
    model, info = AutoModelForCausalLM.from_pretrained(
        str(out), dtype=torch.bfloat16, local_files_only=True, output_loading_info=True
    )
    row["load_s"] = round(time.perf_counter() - start, 1)
    row["after_load"] = _memory()
    row["loading_info"] = {k: sorted(map(str, v))[:5] for k, v in info.items() if v}
    row["params"] = sum(p.numel() for p in model.parameters())
    start = time.perf_counter()
    row["check"] = _check_tensors(model, out, source, sparsity, masks_only)
    row["check_s"] = round(time.perf_counter() - start, 1)
    tokenizer = AutoTokenizer.from_pretrained(str(out), local_files_only=True)
    ids = torch.tensor([tokenizer(CALIB.read_text()[:400])["input_ids"][:n_tokens]])
    start = time.perf_counter()
    with torch.no_grad():
        logits = model(ids, use_cache=False).logits.float()
    row["forward_s"] = round(time.perf_counter() - start, 2)
    row["logits_finite"] = bool(torch.isfinite(logits).all())
    row["after_forward"] = _memory()
    del model, info
    gc.collect()
    start = time.perf_counter()
    streamed = _streamed_logits(out, ids, torch.bfloat16)
    row["streamed_s"] = round(time.perf_counter() - start, 1)
    row["vs_streamed"] = {
        "equal": bool(torch.equal(logits, streamed)),
        "max_abs_diff": float((logits - streamed).abs().max()),
        "max_abs_logit": float(logits.abs().max()),
        "argmax_agree": float((logits.argmax(-1) == streamed.argmax(-1)).float().mean()),
    }
    if source is not None:
        dense = _streamed_logits(source, ids, torch.bfloat16)
        row["vs_dense"] = {
            "max_abs_diff": float((logits - dense).abs().max()),
            "argmax_agree": float((logits.argmax(-1) == dense.argmax(-1)).float().mean()),
        }
    row["end"] = _memory()
    check = row["check"]
    # Wanda and magnitude reach the sparsity in every output row; SparseGPT in every layer
    # (its mask is chosen over blocks of columns across all rows)
    exact, total = (
        (check["rows_with_exact_zeros"], check["rows"])
        if masks_only
        else (check["layers_with_exact_zeros"], check["block_linears"])
    )
    row["ok"] = (
        not row["loading_info"]
        and not check["problems"]
        and (sparsity == 0 or exact == total)
        and row["logits_finite"]
    )
    return row
