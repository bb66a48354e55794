"""Allocation-search trials per hour in this process and on 1 and 2 Ray workers.

    OMP_NUM_THREADS=1 python benchmarks/search_scaling.py [--trials 16] [--steps 20]
        [--out runs/bench/search_scaling]

The small VGG of the channel benchmark (``prunekit.models``, freshly initialised: the rate does
not depend on the weights) on Fashion-MNIST batches of 128, MACs kept <= 0.5, the ``random``
searcher (trial ``n``'s candidate depends only on ``n``, so every row evaluates the same
candidates) and the ``finetune`` objective (``--steps`` Adam steps per trial, then held-out
accuracy): trials of a few seconds, so that starting Ray is paid once against many of them.

Per row it records the wall time of the search, the time ``ray.init`` took (Ray is started
here, before the search, and joined by it), the mean seconds of a trial inside the worker, the
CPU seconds of this process and all its descendants (Ray's GCS, raylet and workers) over the
row, and the 1-minute load average sampled every 2 s: on a shared machine these say how much
of the wall time was ours.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from itertools import islice
from pathlib import Path
from typing import Any

import psutil
import torch

from prunekit.data import load_dataset, make_loader
from prunekit.models import build_model
from prunekit.search import SearchConfig, search


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and every live descendant."""
    me = psutil.Process()
    total = 0.0
    for proc in [me, *me.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            continue
    return total


class LoadSampler:
    """The 1-minute load average every ``period`` seconds, in a background thread."""

    def __init__(self, period: float = 2.0) -> None:
        self.period, self.samples = period, [os.getloadavg()[0]]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self.samples.append(os.getloadavg()[0])

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def run_row(workers: int, args: argparse.Namespace, data: list[Any]) -> dict[str, Any]:
    """One search; ``workers=0`` evaluates in this process, else on that many Ray actors."""
    import ray

    torch.manual_seed(0)  # the same initial weights in every row
    model = build_model("small-vgg").eval()
    example = torch.zeros(1, 1, 28, 28)
    with LoadSampler() as load:
        cpu0, start = cpu_seconds(), time.perf_counter()
        address = None
        if workers:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                     logging_level="ERROR")  # fmt: skip
            address = ray.get_runtime_context().gcs_address
        ray_start = time.perf_counter() - start
        settings = SearchConfig(
            searcher="random", trials=args.trials, storage=":memory:", objective="finetune",
            finetune_steps=args.steps, n_batches=4, eval_batches=4, threads=1, seed=0,
        )  # fmt: skip
        result = search(model, example, data=data, target={"macs": 0.5}, config=settings,
                        workers=max(workers, 1), address=address, progress=False)  # fmt: skip
        wall = time.perf_counter() - start
        cpu = cpu_seconds() - cpu0
        if workers:
            ray.shutdown()
    done = result.completed
    per_trial = sum(t.seconds for t in done) / max(len(done), 1)
    return {
        "workers": workers or "in process",
        "trials": len(result.trials),
        "completed": len(done),
        "wall_s": wall,
        "ray_init_s": ray_start if workers else 0.0,
        "trials_per_hour": 3600 * len(result.trials) / wall,
        "trial_s_in_worker": per_trial,
        "cpu_s": cpu,
        "load_mean": sum(load.samples) / len(load.samples),
        "load_max": max(load.samples),
        "best_score": result.best.score,
        "search": result.config.model_dump(mode="json"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20, help="fine-tune steps per trial")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2],
                        help="0: in this process; N: N Ray workers")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("runs/bench/search_scaling"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    loader = make_loader(load_dataset("fashion-mnist", "train"), batch_size=128, shuffle=True)
    data = list(islice(iter(loader), 8))
    rows = []
    for workers in args.workers:
        rows.append(run_row(workers, args, data))
        print(json.dumps(rows[-1]), flush=True)
    header = ["Ray workers", "trials", "wall s", "ray.init s", "trials/hour",
              "s per trial in worker", "CPU s", "load avg mean / max"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        lines.append(
            f"| {r['workers']} | {r['trials']} | {r['wall_s']:.1f} | {r['ray_init_s']:.1f} | "
            f"{r['trials_per_hour']:.0f} | {r['trial_s_in_worker']:.2f} | {r['cpu_s']:.1f} | "
            f"{r['load_mean']:.1f} / {r['load_max']:.1f} |"
        )
    table = "\n".join(lines)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"args": vars(args) | {"out": str(args.out)},
                                                       "rows": rows}, indent=2))  # fmt: skip
    (args.out / "results.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
