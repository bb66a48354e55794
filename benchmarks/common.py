"""Shared pieces of the benchmarks: config loading, data, cached dense models, JSON/Markdown output.

A benchmark is a YAML config run by a harness script; every harness writes ``results.json`` and
``results.md`` into its output directory. Dense models are trained once and cached as prunekit saves
(safetensors + JSON) under ``runs/bench/dense/``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader

from prunekit.data import load_dataset, make_loader
from prunekit.io import load, save
from prunekit.models import build_model
from prunekit.train import evaluate, seed_everything, train

ROOT = Path(__file__).resolve().parent


def read_config(path: str | Path, quick: bool) -> dict[str, Any]:
    """Load a benchmark config; with ``quick`` its ``quick:`` section overrides the top level."""
    config = yaml.safe_load(Path(path).read_text())
    overrides = config.pop("quick", {}) or {}
    if quick:
        config.update(overrides)
    return config


def loaders(
    dataset: str, batch_size: int, train_limit: int | None, test_limit: int | None, seed: int = 0
) -> tuple[DataLoader[Any], DataLoader[Any]]:
    train_set = load_dataset(dataset, "train")
    test_set = load_dataset(dataset, "test")
    return (
        make_loader(train_set, batch_size, shuffle=True, seed=seed, limit=train_limit),
        make_loader(test_set, 1000, limit=test_limit),
    )


SHIPPED = ROOT / "models"
"""Dense models the documented runs started from, kept in the repository (safetensors, see
``benchmarks/models/README.md``): found before the local cache, so those runs reproduce."""


def cached_model(key: str, cache: Path, model: nn.Module) -> nn.Module | None:
    """``model`` loaded from the shipped or the cached save named ``key``, if there is one."""
    for folder in (SHIPPED / key, cache / key):
        if (folder / "prunekit.json").exists():
            return load(folder, model)
    return None


def dense_model(config: Mapping[str, Any], train_loader: DataLoader[Any], cache: Path) -> nn.Module:
    """Train the config's dense model once (cached by a key of its settings)."""
    spec = config["model"]
    key = "-".join(
        [
            spec["name"],
            config["dataset"],
            f"e{spec['epochs']}",
            f"n{config.get('train_limit')}",
            f"s{config.get('seed', 0)}",
        ]
    )
    path = cache / key
    seed_everything(config.get("seed", 0))  # before building: the initialisation is seeded too
    model = build_model(spec["name"], **spec.get("kwargs", {}))
    found = cached_model(key, cache, model)
    if found is not None:
        return found
    train(model, train_loader, epochs=spec["epochs"], lr=spec.get("lr", 1e-3), progress=False)
    save(model, path, arch={"model": spec["name"], "kwargs": spec.get("kwargs", {})})
    return model


@dataclass(frozen=True)
class Setup:
    """What a harness starts from: the loaders, the (cached) dense model and its accuracy."""

    train: DataLoader[Any]
    test: DataLoader[Any]
    dense: nn.Module
    dense_accuracy: float


def prepare(config: Mapping[str, Any]) -> Setup:
    """Threads, data loaders and the cached dense model of a config, with its test accuracy."""
    torch.set_num_threads(config.get("threads", torch.get_num_threads()))
    train_loader, test_loader = loaders(
        config["dataset"],
        config.get("batch_size", 128),
        config.get("train_limit"),
        config.get("test_limit"),
    )
    cache = Path(config.get("cache_dir", ROOT.parent / "runs" / "bench" / "dense"))
    dense = dense_model(config, train_loader, cache)
    dense_acc = accuracy(dense, test_loader)
    print(f"dense test accuracy: {dense_acc:.2f}%")
    return Setup(train_loader, test_loader, dense, dense_acc)


def accuracy(model: nn.Module, loader: DataLoader[Any]) -> float:
    return 100.0 * evaluate(model, loader).accuracy


def environment() -> dict[str, Any]:
    import prunekit

    return {
        "prunekit": prunekit.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def parse_args(description: str | None) -> tuple[dict[str, Any], Path]:
    """The harness command line: ``CONFIG [--quick] [--out DIR]`` -> (config, output directory)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("config", type=Path)
    parser.add_argument("--quick", action="store_true", help="small CI-sized run")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    suffix = "-quick" if args.quick else ""
    out = args.out or ROOT.parent / "runs" / "bench" / (args.config.stem + suffix)
    return read_config(args.config, args.quick), out


def write_results(out: Path, results: Mapping[str, Any], markdown: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "results.md").write_text(markdown + "\n")
    print(markdown)
    print(f"\nwrote {out / 'results.json'} and {out / 'results.md'}")


def run_per_model(
    script: str,
    names: Sequence[str],
    out: Path,
    *,
    timeout: int,
    table: Callable[[list[dict[str, Any]]], str],
    extra_args: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Run ``script --one NAME`` for each model in a fresh single-threaded process, collect the
    JSON row it prints after ``RESULT ``, and write ``results.json`` / ``results.md`` after every
    model (a stopped sweep resumes: models already in ``results.json`` are skipped). A crash or a
    timeout becomes a row with ``failed``."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    rows: list[dict[str, Any]] = json.loads(path.read_text()) if path.exists() else []
    done = {r["model"] for r in rows}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    for name in names:
        if name in done:
            continue
        start = time.perf_counter()
        try:
            proc = subprocess.run(
                [sys.executable, script, "--one", name, *extra_args],
                capture_output=True, text=True, timeout=timeout, env=env,
            )  # fmt: skip
            found = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
            row = json.loads(found[-1][7:]) if found else {
                "model": name, "params": 0,
                "failed": f"process exited {proc.returncode}: {proc.stderr.strip()[-300:]}",
            }  # fmt: skip
        except subprocess.TimeoutExpired:
            row = {"model": name, "params": 0, "failed": f"timeout after {timeout} s"}
        row["wall_s"] = time.perf_counter() - start
        rows.append(row)
        path.write_text(json.dumps(rows, indent=1))
        (out / "results.md").write_text(table(rows))
        print(f"{name}: {row.get('failed') or 'ok'} ({row['wall_s']:.0f} s)", flush=True)
    return rows
