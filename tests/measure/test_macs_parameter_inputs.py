"""MACs of models that feed a parameter, or a view of one, into a module (timm CaiT and PiT
class tokens, DeBERTa-v2 relative embeddings): counting must work, and verification that
counts MACs must not fail because of the counter."""

from __future__ import annotations

import torch
from torch import nn

from prunekit.graph import build_structural_groups
from prunekit.measure import count_macs
from prunekit.surgery import apply_surgery, verify


class ClassToken(nn.Module):
    """``proj`` (Linear(4, 3)) reads a parameter, a view of it, and the input."""

    def __init__(self) -> None:
        super().__init__()
        self.token = nn.Parameter(torch.ones(1, 1, 4))
        self.proj = nn.Linear(4, 3)
        self.head = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        token = self.proj(self.token)  # 1 row: 4 * 3 = 12 MACs
        tokens = self.proj(self.token.expand(1, 2, 4))  # a view, 2 rows: 24 MACs
        h = self.proj(x) + token + tokens  # x is (1, 2, 4): 24 MACs
        return self.head(torch.relu(h))  # 2 rows of Linear(3, 2): 12 MACs


def test_a_parameter_and_a_view_of_one_as_module_inputs_are_counted() -> None:
    torch.manual_seed(0)
    model = ClassToken().eval()
    count = count_macs(model, torch.randn(1, 2, 4))
    assert count.total == 12 + 24 + 24 + 12
    assert count.by_module["proj"] == 60 and count.by_module["head"] == 12
    assert all(p.requires_grad for p in model.parameters())  # flags left as they were


def test_verification_counting_macs_on_such_a_model_verifies() -> None:
    torch.manual_seed(0)
    model = ClassToken().eval()
    x = torch.randn(1, 2, 4)
    groups = build_structural_groups(model, x)
    selection = {g.name: torch.arange(g.n_units) > 0 for g in groups}  # drop unit 0 of each
    pruned, _ = apply_surgery(model, groups, selection)
    report = verify(model, pruned, groups, selection, x, count_macs=True)
    assert report.verified and report.macs_before is not None
    assert report.macs_before.total == 72
