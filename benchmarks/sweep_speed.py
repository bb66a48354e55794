"""``structural_sweep.py --speed``: prunekit against Torch-Pruning on the same models, in one
process, interleaved: trace + group, and the whole prune; medians of CPU and wall time."""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Mapping
from typing import Any

import torch
from sweep_models import build, prunekit_options, torch_pruning_prune
from torch import nn


def _full_prune(
    lib: str, model: nn.Module, inputs: Any, config: Mapping[str, Any]
) -> tuple[float, float]:
    """CPU and wall seconds of one whole channel prune at the sweep's settings. prunekit works on
    its own copy (the user's model is untouched, the copy is timed); Torch-Pruning prunes in
    place, so it gets a copy made before the clock starts."""

    import prunekit

    target = copy.deepcopy(model) if lib == "torch_pruning" else model
    wall, cpu = time.perf_counter(), time.process_time()
    if lib == "prunekit":
        prunekit.prune(model, inputs, **prunekit_options(config))
    else:
        torch_pruning_prune(target, inputs, config)
    return time.process_time() - cpu, time.perf_counter() - wall


def speed(config: Mapping[str, Any]) -> dict[str, Any]:
    """Trace + group, prunekit vs Torch-Pruning, interleaved in one process; medians."""
    import torch_pruning as tp

    from prunekit.graph import build_structural_groups

    torch.set_num_threads(1)
    spec = config["speed"]
    rows = {}
    for key in spec["models"]:
        model, inputs, _ = build(f"torchvision:{key}", config)
        times: dict[str, list[tuple[float, float]]] = {"prunekit": [], "torch_pruning": []}
        build_structural_groups(model, inputs)  # imports and first-call caches, both libraries
        list(tp.DependencyGraph().build_dependency(model, example_inputs=inputs).get_all_groups())
        full: dict[str, list[tuple[float, float]]] = {"prunekit": [], "torch_pruning": []}
        for _ in range(spec["repeats"]):
            for lib in times:
                wall, cpu = time.perf_counter(), time.process_time()
                if lib == "prunekit":
                    build_structural_groups(model, inputs)
                else:
                    graph = tp.DependencyGraph().build_dependency(model, example_inputs=inputs)
                    list(graph.get_all_groups())
                times[lib].append((time.process_time() - cpu, time.perf_counter() - wall))
            for lib in full:  # the whole prune: trace, score, select, remove
                full[lib].append(_full_prune(lib, model, inputs, config))
        med = {
            lib: (statistics.median(c for c, _ in v), statistics.median(w for _, w in v))
            for lib, v in times.items()
        }
        whole = {lib: statistics.median(c for c, _ in v) for lib, v in full.items()}
        rows[key] = {
            "prune_prunekit_cpu_s": whole["prunekit"],
            "prune_torch_pruning_cpu_s": whole["torch_pruning"],
            "prune_ratio_cpu": whole["prunekit"] / whole["torch_pruning"],
            "prunekit_cpu_s": med["prunekit"][0],
            "torch_pruning_cpu_s": med["torch_pruning"][0],
            "prunekit_wall_s": med["prunekit"][1],
            "torch_pruning_wall_s": med["torch_pruning"][1],
            "ratio_cpu": med["prunekit"][0] / med["torch_pruning"][0],
            "ratio_wall": med["prunekit"][1] / med["torch_pruning"][1],
        }
        print(key, rows[key], flush=True)
    return rows
