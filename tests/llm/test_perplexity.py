"""Perplexity on toys whose answer is worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from prunekit.errors import ConfigError, DataError
from prunekit.llm import perplexity


class FixedLogits(nn.Module):
    """Predicts the same next-token distribution ``softmax(logits)`` at every position."""

    def __init__(self, logits: Tensor) -> None:
        super().__init__()
        self.logits = nn.Parameter(logits.clone())

    def forward(self, ids: Tensor) -> Tensor:
        return self.logits.expand(*ids.shape, -1)


def test_uniform_model_has_perplexity_equal_to_the_vocabulary() -> None:
    result = perplexity(FixedLogits(torch.zeros(7)), torch.arange(50) % 7, seq_len=8)
    assert result.perplexity == pytest.approx(7.0, rel=1e-6)
    # non-overlapping windows: the first token of each window has no context and is not scored
    assert (result.windows, result.tokens) == (7, 50 - 7)


def test_known_distribution_with_overlapping_windows() -> None:
    p = torch.tensor([0.5, 0.25, 0.25])
    ids = torch.tensor([0, 1, 0, 2, 0, 0, 1, 2, 0, 0, 0])
    # scored tokens are ids[1:]: six 0s (p=1/2), two 1s and two 2s (p=1/4)
    expected = math.exp(-(6 * math.log(0.5) + 4 * math.log(0.25)) / 10)
    for stride in (1, 2, 3):  # overlapping windows score every token after the first once
        result = perplexity(FixedLogits(p.log()), ids, seq_len=4, stride=stride)
        assert result.perplexity == pytest.approx(expected, rel=1e-6)
        assert result.tokens == 10


def test_max_windows_scores_a_prefix() -> None:
    model = FixedLogits(torch.zeros(5))
    result = perplexity(model, torch.arange(40) % 5, seq_len=8, max_windows=2)
    assert (result.windows, result.tokens) == (2, 14)


def test_perplexity_errors() -> None:
    model = FixedLogits(torch.zeros(3))
    with pytest.raises(ConfigError, match="stride"):
        perplexity(model, torch.arange(10) % 3, seq_len=4, stride=5)
    with pytest.raises(DataError, match="at least 2 tokens"):
        perplexity(model, torch.tensor([1]), seq_len=4)


def test_encoder_without_logits_is_refused(tiny_bert: nn.Module) -> None:
    with pytest.raises(DataError, match="causal language model"):
        perplexity(tiny_bert, torch.arange(20) % 90, seq_len=8)
