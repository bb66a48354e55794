"""timm classes named ``Attention`` that are not ViT's fused-qkv attention (LeViT,
EfficientFormer, TinyViT) prune and verify instead of crashing in the model-family facts."""

from __future__ import annotations

import pytest
import torch

import prunekit
from prunekit.compat.torchvision_shim import ensure_torchvision_ops

ensure_torchvision_ops()
timm = pytest.importorskip("timm")


@pytest.mark.parametrize("name", ["levit_128s", "efficientformer_l1", "tiny_vit_5m_224"])
def test_timm_attention_variants_prune_and_verify(name: str) -> None:
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = prunekit.prune(
        model, torch.randn(1, 3, 224, 224), granularity="channel", sparsity=0.3,
        estimator="magnitude", recalibrate=False, metrics=False,
    )  # fmt: skip
    assert result.verification is not None and result.verification.complete
    assert sum(p.numel() for p in result.model.parameters()) < sum(
        v.numel() for v in before.values()
    )
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
