"""One torchvision classifier pruned to a MACs or params target through ``prunekit.prune`` (trace,
default selection, search, surgery, verification that keeps unverifiable groups whole and meets
the target with the others), printing the achieved ratio.

    OMP_NUM_THREADS=1 python benchmarks/target_api.py vit_b_16 macs=0.5
"""

from __future__ import annotations

import argparse
import time

import torch

from prunekit.compat.torchvision_shim import ensure_torchvision_ops


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("model", help="torchvision classification model name")
    parser.add_argument("target", help="METRIC=FRACTION, e.g. macs=0.5")
    args = parser.parse_args()
    ensure_torchvision_ops()
    import torchvision

    import prunekit
    from prunekit.budget import parse_target

    torch.set_num_threads(1)
    target = parse_target(args.target)
    model = torchvision.models.get_model(args.model, weights=None).eval()
    start = time.perf_counter()
    result = prunekit.prune(
        model, torch.randn(1, 3, 224, 224), granularity="channel",
        target={target.metric: target.keep}, recalibrate=False,
    )  # fmt: skip
    ratio = result.macs_ratio if target.metric == "macs" else result.params_ratio
    assert ratio is not None
    error = 100 * (ratio / target.keep - 1)
    print(
        f"{args.model} {target}: achieved {ratio:.4f} error {error:+.2f}% "
        f"kept whole {len(result.kept_unverifiable)} verified {result.verification is not None} "
        f"{time.perf_counter() - start:.0f} s"
    )


if __name__ == "__main__":
    main()
