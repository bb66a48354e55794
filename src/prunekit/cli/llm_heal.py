"""``prunekit llm heal``: fine-tune a width- or depth-pruned language model on local text
(LoRA merged back, or full), optionally distilled from the dense model, and save it."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from prunekit.cli.llm import _guarded, _load, _save, _source_model

console = Console()


def heal_command(
    model: Annotated[
        str, typer.Argument(help="The pruned model: a directory written by prunekit llm.")
    ],
    text: Annotated[Path, typer.Option(help="Training text file (local).")],
    out: Annotated[Path, typer.Option(help="Directory for the healed model.")],
    method: Annotated[str, typer.Option(help="lora (adapters, merged) or full.")] = "lora",
    steps: Annotated[int, typer.Option(help="Optimizer steps.")] = 100,
    batch_size: Annotated[int, typer.Option(help="Windows per step.")] = 4,
    lr: Annotated[
        float | None, typer.Option(help="AdamW learning rate (default 2e-4 lora, 2e-5 full).")
    ] = None,
    rank: Annotated[int, typer.Option(help="LoRA rank.")] = 8,
    teacher: Annotated[
        str | None,
        typer.Option(
            help="Dense model to distil from (default: the one the pruned model came from)."
        ),
    ] = None,
    distill: Annotated[
        float, typer.Option(help="Weight of the distillation term, in [0, 1].")
    ] = 0.0,
    samples: Annotated[int, typer.Option(help="Training windows drawn from the text.")] = 64,
    seq_len: Annotated[int, typer.Option(help="Tokens per window.")] = 256,
    seed: Annotated[int, typer.Option(help="Seed of the windows and of the adapters.")] = 0,
) -> None:
    """Heal a pruned model: a short fine-tune, the merged weights saved to --out."""
    from prunekit.llm import calibration_windows, load_model
    from prunekit.llm.heal import HealConfig, heal
    from prunekit.llm.pruned_io import PLAN_FILE

    config = _guarded(
        lambda: HealConfig(
            method=method,  # type: ignore[arg-type]
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            rank=rank,
            distill=distill,
            seed=seed,
        )
    )
    net, tokenizer = _guarded(lambda: _load(model, causal=True))
    windows = _guarded(
        lambda: calibration_windows(tokenizer, text, n_samples=samples, seq_len=seq_len, seed=seed)
    )
    dense = None
    if distill > 0:
        source = teacher or _source_model(model)
        if source is None:
            raise typer.BadParameter("--distill needs --teacher (the dense model)")
        dense, _ = _guarded(lambda: load_model(source, causal=True))
    student: Any = net
    result = _guarded(
        lambda: heal(
            student, windows, config, teacher=dense, inplace=True, progress=sys.stderr.isatty()
        )
    )
    record = {
        "model": _source_model(model) or model,
        "healed_from": model,
        "heal": {
            "method": method,
            "steps": steps,
            "batch_size": batch_size,
            "lr": config.learning_rate,
            "rank": rank,
            "distill": distill,
            "teacher": teacher,
            "tokens": result.tokens,
            "first_loss": result.losses[0],
            "last_loss": result.losses[-1],
        },
        "text": {"path": str(text), "samples": samples, "seq_len": seq_len, "seed": seed},
        "seconds": round(result.seconds, 2),
    }
    _save(result.model, tokenizer, out, record)
    plan = Path(model) / PLAN_FILE
    if plan.is_file():  # width-pruned: load_pruned replays the plan
        shutil.copyfile(plan, out / PLAN_FILE)
    console.print(
        f"healed with {method} for {steps} steps ({result.tokens} tokens): loss "
        f"{result.losses[0]:.3f} -> {result.losses[-1]:.3f} in {result.seconds:.1f} s -> {out}",
        highlight=False,
    )
