"""``prunekit llm`` commands: one-shot pruning and evaluation of language models.

Mounted by the main app with ``app.add_typer(llm_app, name="llm")``. Each command parses its
options and calls :mod:`prunekit.llm`; prunekit errors are shown as one line, exit status 2.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from prunekit.errors import PrunekitError

llm_app = typer.Typer(
    help="Prune and evaluate transformer language models and encoders (Wanda, SparseGPT, "
    "magnitude, OWL, depth pruning, width pruning of heads and MLP neurons).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")

ModelOption = Annotated[
    str, typer.Option(help="Model directory, or a named offline model: smollm2, minilm.")
]


def _guarded(action: Callable[[], T]) -> T:
    try:
        return action()
    except PrunekitError as err:
        err_console.print(f"[bold red]error:[/] {err}", highlight=False)
        raise typer.Exit(2) from None


@llm_app.command("prune")
def prune_command(
    model: ModelOption,
    calib: Annotated[Path, typer.Option(help="Calibration text file.")],
    out: Annotated[Path, typer.Option(help="Directory for the pruned model (save_pretrained).")],
    method: Annotated[str, typer.Option(help="magnitude, wanda or sparsegpt.")] = "wanda",
    sparsity: Annotated[float, typer.Option(help="Fraction of weights removed, in [0, 1).")] = 0.5,
    pattern: Annotated[str | None, typer.Option(help="N:M pattern, e.g. 2:4 or 4:8.")] = None,
    samples: Annotated[int, typer.Option(help="Calibration windows.")] = 32,
    seq_len: Annotated[int, typer.Option(help="Tokens per calibration window.")] = 512,
    seed: Annotated[int, typer.Option(help="Seed of the window offsets.")] = 0,
    exclude: Annotated[
        list[str] | None, typer.Option(help="Linear name patterns to leave dense.")
    ] = None,
    allocation: Annotated[
        str, typer.Option(help="uniform, or owl (outlier-weighted per-block sparsity).")
    ] = "uniform",
    owl_lambda: Annotated[float, typer.Option(help="OWL: layers stay in sparsity +- this.")] = 0.08,
    owl_threshold: Annotated[float, typer.Option(help="OWL: outlier = score > M x mean.")] = 5.0,
) -> None:
    """Prune every Linear of every transformer block, layer by layer, and save the result."""
    from prunekit.llm import LLMPruneConfig, calibration_windows, load_model, prune_llm

    config = _guarded(
        lambda: LLMPruneConfig(
            method=method,
            sparsity=sparsity,
            pattern=pattern,
            exclude=tuple(exclude or ()),
            bake=True,
            allocation=allocation,  # type: ignore[arg-type]
            owl_lambda=owl_lambda,
            owl_threshold=owl_threshold,
        )
    )
    net, tokenizer = _guarded(lambda: load_model(model))
    windows = None
    if config.build_method().needs_data or config.allocation == "owl":
        windows = _guarded(
            lambda: calibration_windows(
                tokenizer, calib, n_samples=samples, seq_len=seq_len, seed=seed
            )
        )
    result = _guarded(
        lambda: prune_llm(net, windows, config, inplace=True, progress=sys.stderr.isatty())
    )
    record = {
        "model": model,
        "method": method,
        "sparsity": sparsity,
        "pattern": pattern,
        "allocation": allocation,
        "calibration": {"text": str(calib), "samples": samples, "seq_len": seq_len, "seed": seed},
        "seconds": round(result.seconds, 2),
        "layer_sparsity": result.layer_sparsity,
    }
    _save(net, tokenizer, out, record)
    console.print(
        f"pruned {len(result.layer_sparsity)} layers with {method} "
        f"(mean sparsity {result.sparsity:.3f}) in {result.seconds:.1f} s -> {out}",
        highlight=False,
    )


@llm_app.command("depth")
def depth_command(
    model: ModelOption,
    calib: Annotated[Path, typer.Option(help="Calibration text file.")],
    out: Annotated[Path, typer.Option(help="Directory for the shorter model (save_pretrained).")],
    remove: Annotated[int, typer.Option(help="Number of blocks to remove (k).")],
    metric: Annotated[
        str, typer.Option(help="Block score: angular (1 - cos in/out) or perplexity.")
    ] = "angular",
    samples: Annotated[int, typer.Option(help="Calibration windows.")] = 32,
    seq_len: Annotated[int, typer.Option(help="Tokens per calibration window.")] = 512,
    seed: Annotated[int, typer.Option(help="Seed of the window offsets.")] = 0,
) -> None:
    """Score every transformer block and remove the k least important ones (depth pruning)."""
    from prunekit.llm import calibration_windows, load_model, prune_depth

    net, tokenizer = _guarded(lambda: load_model(model))
    windows = _guarded(
        lambda: calibration_windows(tokenizer, calib, n_samples=samples, seq_len=seq_len, seed=seed)
    )
    result = _guarded(
        lambda: prune_depth(
            net, windows, remove, metric=metric, inplace=True, progress=sys.stderr.isatty()
        )
    )
    record = {
        "model": model,
        "depth": {"metric": metric, "removed": result.removed, "scores": result.scores},
        "calibration": {"text": str(calib), "samples": samples, "seq_len": seq_len, "seed": seed},
        "seconds": round(result.seconds, 2),
    }
    _save(result.model, tokenizer, out, record)
    console.print(
        f"removed blocks {result.removed} of {len(result.scores)} ({metric} scores) in "
        f"{result.seconds:.1f} s -> {out}",
        highlight=False,
    )


@llm_app.command("width")
def width_command(
    model: ModelOption,
    calib: Annotated[Path, typer.Option(help="Calibration text file.")],
    out: Annotated[Path, typer.Option(help="Directory for the narrower model.")],
    sparsity: Annotated[
        float, typer.Option(help="Fraction of parameters removed, in [0, 1) (see --of).")
    ] = 0.2,
    of: Annotated[
        str, typer.Option(help="Denominator of --sparsity: model (all parameters) or blocks.")
    ] = "model",
    heads: Annotated[bool, typer.Option(help="Remove whole attention-head units.")] = True,
    mlp: Annotated[bool, typer.Option(help="Remove MLP neurons.")] = True,
    estimator: Annotated[
        str, typer.Option(help="activation, taylor (causal LMs), magnitude, or a registry name.")
    ] = "activation",
    round_to: Annotated[int, typer.Option(help="Kept MLP widths are multiples of this.")] = 8,
    split: Annotated[
        str,
        typer.Option(
            help="Heads vs MLP neurons: rule (fixed) or data (the split with the lowest "
            "calibration loss)."
        ),
    ] = "rule",
    samples: Annotated[int, typer.Option(help="Calibration windows.")] = 8,
    seq_len: Annotated[int, typer.Option(help="Tokens per calibration window.")] = 256,
    seed: Annotated[int, typer.Option(help="Seed of the window offsets.")] = 0,
) -> None:
    """Remove whole attention heads and MLP neurons, equally in every block, and save the
    narrower model (save_pretrained + the surgery plan, prunekit_plan.json)."""
    from prunekit.llm import (
        WidthPruneConfig,
        calibration_windows,
        load_model,
        prune_width,
        save_pruned,
    )

    config = _guarded(
        lambda: WidthPruneConfig(
            sparsity=sparsity,
            of=of,  # type: ignore[arg-type]
            heads=heads,
            mlp=mlp,
            estimator=estimator,
            round_to=round_to,
            split=split,  # type: ignore[arg-type]
        )
    )
    net, tokenizer = _guarded(lambda: load_model(model))
    windows = _guarded(
        lambda: calibration_windows(tokenizer, calib, n_samples=samples, seq_len=seq_len, seed=seed)
    )
    result = _guarded(lambda: prune_width(net, windows, config, inplace=True))
    record = {
        "model": model,
        "width": {
            "sparsity": sparsity,
            "of": of,
            "heads": heads,
            "mlp": mlp,
            "estimator": estimator,
            "round_to": round_to,
            **result.summary(),
        },
        "calibration": {"text": str(calib), "samples": samples, "seq_len": seq_len, "seed": seed},
        "seconds": round(result.seconds, 2),
    }
    _guarded(lambda: save_pruned(result.model, out, result.plan))
    _save(result.model, tokenizer, out, record, weights=False)
    a = result.allocation
    loader = "from_pretrained" if result.config_describes_shapes else "prunekit.llm.load_pruned"
    console.print(
        f"removed {a.heads_removed} of {a.heads_per_layer} head units and {a.mlp_removed} of "
        f"{a.mlp_per_layer} MLP neurons per block: {result.sparsity:.3f} of all parameters, "
        f"{result.block_sparsity:.3f} of the blocks' ({result.seconds:.1f} s) -> {out} "
        f"(load with {loader})",
        highlight=False,
    )


def _save(
    net: object, tokenizer: object, out: Path, record: dict[str, object], *, weights: bool = True
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    if weights:
        net.save_pretrained(out)  # type: ignore[attr-defined]
    tokenizer.save_pretrained(out)  # type: ignore[attr-defined]
    (out / "prunekit_llm.json").write_text(json.dumps(record, indent=2))


def _load(model: str, causal: bool | None = None) -> tuple[object, object]:
    """``load_model``, or for a directory written by ``width`` (it holds the surgery plan)
    ``load_pruned`` with the directory's tokenizer: its config may not describe its shapes."""
    from prunekit.llm import load_model, load_pruned
    from prunekit.llm.pruned_io import PLAN_FILE

    if not (Path(model) / PLAN_FILE).is_file():
        return load_model(model, causal=causal)
    from prunekit.compat.torchvision_shim import ensure_torchvision_ops

    ensure_torchvision_ops()  # transformers imports torchvision when it is installed
    from transformers import AutoTokenizer

    return load_pruned(model), AutoTokenizer.from_pretrained(model, local_files_only=True)


def _source_model(model: str) -> str | None:
    """The model a pruned directory was made from (its ``prunekit_llm.json``), if recorded."""
    record = Path(model) / "prunekit_llm.json"
    if record.is_file():
        source = json.loads(record.read_text()).get("model")
        return str(source) if source else None
    return None


@llm_app.command("eval")
def eval_command(
    model: ModelOption,
    text: Annotated[
        Path, typer.Option(help="Text file: perplexity (decoders) or sentences (encoders).")
    ],
    seq_len: Annotated[int, typer.Option(help="Tokens per window.")] = 512,
    stride: Annotated[int | None, typer.Option(help="Window step (default seq-len).")] = None,
    max_windows: Annotated[int | None, typer.Option(help="Stop after this many windows.")] = None,
    prompt: Annotated[str, typer.Option(help="Prompt for the greedy check.")] = (
        "The capital of France is"
    ),
    tokens: Annotated[int, typer.Option(help="Tokens to generate greedily.")] = 8,
    reference: Annotated[
        str | None,
        typer.Option(
            help="Encoders: dense model to compare embeddings with (default: the model the "
            "directory was pruned from, per its prunekit_llm.json, else the model itself)."
        ),
    ] = None,
    sentences: Annotated[int, typer.Option(help="Encoders: sentences to embed.")] = 256,
) -> None:
    """Decoders: perplexity over a text file (sliding window) and a greedy continuation.
    Encoders: sentence-embedding retention against a dense reference model."""
    net, tokenizer = _guarded(lambda: _load(model))
    if type(net).__name__.endswith("ForCausalLM"):
        _eval_decoder(net, tokenizer, model, text, seq_len, stride, max_windows, prompt, tokens)
    else:
        ref = reference or _source_model(model) or model
        _eval_encoder(net, tokenizer, model, ref, text, sentences)


def _eval_decoder(
    net: object,
    tokenizer: object,
    model: str,
    text: Path,
    seq_len: int,
    stride: int | None,
    max_windows: int | None,
    prompt: str,
    tokens: int,
) -> None:
    from torch import nn

    from prunekit.llm import greedy_generate, perplexity, read_text, tokenize

    assert isinstance(net, nn.Module)
    ids = _guarded(lambda: tokenize(tokenizer, read_text(text)))
    result = _guarded(
        lambda: perplexity(net, ids, seq_len=seq_len, stride=stride, max_windows=max_windows)
    )
    continuation = greedy_generate(net, tokenizer, prompt, tokens)
    table = Table(title=f"{model} on {text.name}")
    for column in ("perplexity", "nll / token", "tokens", "windows", "greedy"):
        table.add_column(column)
    table.add_row(
        f"{result.perplexity:.3f}",
        f"{result.nll:.4f}",
        str(result.tokens),
        str(result.windows),
        repr(prompt + continuation),
    )
    console.print(table)


def _eval_encoder(
    net: object, tokenizer: object, model: str, reference: str, text: Path, n: int
) -> None:
    from torch import nn

    from prunekit.llm import embedding_retention, read_sentences, sentence_embeddings

    assert isinstance(net, nn.Module)
    found = _guarded(lambda: read_sentences(text, n=n))
    pruned = sentence_embeddings(net, tokenizer, found)
    dense_net, dense_tokenizer = _guarded(lambda: _load(reference, causal=False))
    assert isinstance(dense_net, nn.Module)
    dense = sentence_embeddings(dense_net, dense_tokenizer, found)
    result = _guarded(lambda: embedding_retention(dense, pruned))
    table = Table(title=f"{model} vs {reference}: embeddings of {text.name}")
    for column in ("mean cosine", "min cosine", "spearman (pairwise sims)", "sentences"):
        table.add_column(column)
    table.add_row(
        f"{result.mean_cosine:.4f}",
        f"{result.min_cosine:.4f}",
        f"{result.spearman:.4f}",
        str(result.sentences),
    )
    console.print(table)
