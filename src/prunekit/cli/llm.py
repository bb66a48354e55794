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
    help="Prune and evaluate transformer language models (Wanda, SparseGPT, magnitude).",
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
        )
    )
    net, tokenizer = _guarded(lambda: load_model(model))
    windows = None
    if config.build_method().needs_data:
        windows = _guarded(
            lambda: calibration_windows(
                tokenizer, calib, n_samples=samples, seq_len=seq_len, seed=seed
            )
        )
    result = _guarded(
        lambda: prune_llm(net, windows, config, inplace=True, progress=sys.stderr.isatty())
    )
    out.mkdir(parents=True, exist_ok=True)
    net.save_pretrained(out)  # type: ignore[operator]
    tokenizer.save_pretrained(out)
    record = {
        "model": model,
        "method": method,
        "sparsity": sparsity,
        "pattern": pattern,
        "calibration": {"text": str(calib), "samples": samples, "seq_len": seq_len, "seed": seed},
        "seconds": round(result.seconds, 2),
        "layer_sparsity": result.layer_sparsity,
    }
    (out / "prunekit_llm.json").write_text(json.dumps(record, indent=2))
    console.print(
        f"pruned {len(result.layer_sparsity)} layers with {method} "
        f"(mean sparsity {result.sparsity:.3f}) in {result.seconds:.1f} s -> {out}",
        highlight=False,
    )


@llm_app.command("eval")
def eval_command(
    model: ModelOption,
    text: Annotated[Path, typer.Option(help="Text file for perplexity (e.g. WikiText-2).")],
    seq_len: Annotated[int, typer.Option(help="Tokens per window.")] = 512,
    stride: Annotated[int | None, typer.Option(help="Window step (default seq-len).")] = None,
    max_windows: Annotated[int | None, typer.Option(help="Stop after this many windows.")] = None,
    prompt: Annotated[str, typer.Option(help="Prompt for the greedy check.")] = (
        "The capital of France is"
    ),
    tokens: Annotated[int, typer.Option(help="Tokens to generate greedily.")] = 8,
) -> None:
    """Perplexity over a text file (sliding window) and a greedy continuation of a prompt."""
    from prunekit.llm import greedy_generate, load_model, perplexity, read_text, tokenize

    net, tokenizer = _guarded(lambda: load_model(model, causal=True))
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
