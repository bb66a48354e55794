"""``prunekit llm stream MODEL_DIR OUT_DIR``: prune a model too large for memory one block at a
time from its safetensors shards — weights (Wanda, SparseGPT, magnitude; N:M) or, with
``--width`` / ``--heads`` / ``--mlp``, whole attention heads and MLP neurons."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from prunekit.cli.llm import _guarded
from prunekit.errors import ConfigError

console = Console()


def _refuse_exclude() -> None:
    raise ConfigError(
        "--exclude leaves Linears dense in weight pruning; width pruning removes heads and MLP "
        "neurons of every block: drop --exclude"
    )


def stream_command(
    model_dir: Annotated[Path, typer.Argument(help="Hugging Face directory, safetensors shards.")],
    out_dir: Annotated[Path, typer.Argument(help="Directory for the pruned shards (resumable).")],
    calib: Annotated[
        Path | None, typer.Option(help="Calibration text (tokenised with the model's tokenizer).")
    ] = None,
    method: Annotated[
        str | None, typer.Option(help="magnitude, wanda (default) or sparsegpt.")
    ] = None,
    sparsity: Annotated[
        float | None, typer.Option(help="Fraction of weights removed, in [0, 1) (default 0.5).")
    ] = None,
    pattern: Annotated[str | None, typer.Option(help="N:M pattern, e.g. 2:4 or 4:8.")] = None,
    width: Annotated[
        float | None,
        typer.Option(help="Width pruning: fraction of the parameters removed as heads and MLP."),
    ] = None,
    heads: Annotated[
        int | None, typer.Option(help="Width pruning: head units removed per block.")
    ] = None,
    mlp: Annotated[
        int | None, typer.Option(help="Width pruning: MLP neurons removed per block.")
    ] = None,
    of: Annotated[str, typer.Option(help="--width of 'blocks' or the whole 'model'.")] = "blocks",
    estimator: Annotated[
        str, typer.Option(help="Width pruning scores: activation or magnitude.")
    ] = "activation",
    propagate: Annotated[
        str, typer.Option(help="Width pruning: next block's inputs from the 'pruned' or 'dense'.")
    ] = "pruned",
    round_to: Annotated[int, typer.Option(help="Kept MLP widths are multiples of this.")] = 8,
    samples: Annotated[int, typer.Option(help="Calibration windows.")] = 8,
    seq_len: Annotated[int, typer.Option(help="Tokens per calibration window.")] = 128,
    seed: Annotated[int, typer.Option(help="Seed of the window offsets.")] = 0,
    exclude: Annotated[
        list[str] | None, typer.Option(help="Linear name patterns to leave dense.")
    ] = None,
) -> None:
    """Prune a model too large for memory, one block at a time from its safetensors shards.

    Rerun the same command to resume an interrupted run from its last complete block. A
    width-pruned directory loads with prunekit.llm.load_pruned (and `prunekit llm eval`).
    """
    from prunekit.llm.stream_width import StreamWidthConfig
    from prunekit.llm.streaming import prune_streaming

    is_width = width is not None or heads is not None or mlp is not None
    calibration = {"text": str(calib), "samples": samples, "seq_len": seq_len, "seed": seed}
    common: dict[str, Any] = {
        "calibration": calib,
        "n_samples": samples,
        "seq_len": seq_len,
        "seed": seed,
        "progress": sys.stderr.isatty(),
    }
    if is_width:
        if exclude:
            _guarded(_refuse_exclude)
        config = _guarded(
            lambda: StreamWidthConfig(
                width=width, heads=heads, mlp=mlp, of=of, estimator=estimator,  # type: ignore[arg-type]
                propagate=propagate, round_to=round_to,  # type: ignore[arg-type]
            )
        )  # fmt: skip
        result = _guarded(
            lambda: prune_streaming(
                model_dir, out_dir, method=method, sparsity=sparsity, pattern=pattern,
                width=config, **common,
            )
        )  # fmt: skip
        assert result.width is not None
        record: dict[str, Any] = {
            "model": str(model_dir),
            "width": {k: v for k, v in vars(config).items()},
            "calibration": calibration,
            "seconds": round(result.seconds, 2),
            **result.width,
        }
        done = result.width["allocation"]
        summary = (
            f"removed {done['heads_removed']} of {done['heads_per_layer']} head units and "
            f"{done['mlp_removed']} of {done['mlp_per_layer']} MLP neurons in each of "
            f"{result.blocks} blocks ({result.width['sparsity']:.3f} of the parameters)"
        )
    else:
        result = _guarded(
            lambda: prune_streaming(
                model_dir, out_dir, method=method, sparsity=sparsity, pattern=pattern,
                exclude=tuple(exclude or ()), **common,
            )
        )  # fmt: skip
        name = method or "wanda"
        record = {
            "model": str(model_dir),
            "method": name,
            "sparsity": 0.5 if sparsity is None else sparsity,
            "pattern": pattern,
            "calibration": calibration,
            "seconds": round(result.seconds, 2),
            "layer_sparsity": result.layer_sparsity,
        }
        summary = (
            f"pruned {len(result.layer_sparsity)} layers of {result.blocks} blocks with {name} "
            f"(mean sparsity {result.sparsity:.3f})"
        )
    (out_dir / "prunekit_llm.json").write_text(json.dumps(record, indent=2, default=list))
    resumed = f", resumed after block {result.resumed_from}" if result.resumed_from else ""
    console.print(f"{summary} in {result.seconds:.1f} s{resumed} -> {out_dir}", highlight=False)
