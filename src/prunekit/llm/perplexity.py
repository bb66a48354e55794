"""Perplexity with a sliding window, and a greedy-decoding check.

:func:`perplexity` follows the strided evaluation of the Hugging Face perplexity guide: windows of
``seq_len`` tokens start every ``stride`` tokens, and each window scores only the tokens the
previous window did not. With ``stride < seq_len`` every token after the first is scored exactly
once, with at least ``seq_len - stride`` tokens of context; with ``stride == seq_len`` (no
overlap) the first token of each window has no context and is not scored. One window is in
memory at a time, and only the log-probabilities of the scored tokens are kept; ``max_windows``
stops early for quick runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from prunekit.errors import ConfigError, DataError
from prunekit.measure.inputs import eval_mode


@dataclass(frozen=True)
class Perplexity:
    """Result of :func:`perplexity`: ``exp(nll)``, the mean negative log-likelihood per scored
    token (nats), how many tokens were scored and in how many windows."""

    perplexity: float
    nll: float
    tokens: int
    windows: int


def logits_of(output: Any) -> Tensor:
    """The logits of a model output (a Hugging Face output object, a tuple, or a tensor)."""
    if isinstance(output, Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, Tensor):
        return logits
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        return output[0]
    raise DataError(
        f"the model returned {type(output).__name__} without logits; perplexity needs a "
        "causal language model (e.g. AutoModelForCausalLM), not an encoder"
    )


def perplexity(
    model: nn.Module,
    ids: Tensor,
    *,
    seq_len: int = 512,
    stride: int | None = None,
    max_windows: int | None = None,
) -> Perplexity:
    """Perplexity of a causal LM on the 1-D token tensor ``ids``.

    Args:
        seq_len: tokens per window (the model's context for the first scored token of a window).
        stride: start of each window after the previous one (default ``seq_len``: no overlap).
        max_windows: evaluate at most this many windows (a prefix of the text).
    """
    stride = seq_len if stride is None else stride
    if not 0 < stride <= seq_len:
        raise ConfigError(f"need 0 < stride <= seq_len, got stride={stride}, seq_len={seq_len}")
    if max_windows is not None and max_windows < 1:
        raise ConfigError(f"max_windows must be >= 1, got {max_windows}")
    if ids.dim() != 1 or ids.numel() < 2:
        raise DataError(f"perplexity needs a 1-D text of at least 2 tokens, got {tuple(ids.shape)}")
    device = next(model.parameters(), torch.empty(0)).device
    total, count, windows, prev_end = 0.0, 0, 0, 0
    with eval_mode(model), torch.no_grad():
        for begin in range(0, ids.numel(), stride):
            end = min(begin + seq_len, ids.numel())
            first = max(prev_end, begin + 1)  # first token this window scores
            window = ids[begin:end].to(device)[None]
            logits = logits_of(model(window))[0, first - 1 - begin : end - 1 - begin]
            log_probs = torch.log_softmax(logits.float(), dim=-1)
            targets = window[0, first - begin : end - begin]
            total -= float(log_probs.gather(1, targets[:, None]).sum())
            count += targets.numel()
            windows += 1
            prev_end = end
            if end == ids.numel() or (max_windows is not None and windows >= max_windows):
                break
    nll = total / count
    return Perplexity(math.exp(nll), nll, count, windows)


def greedy_generate(
    model: nn.Module, tokenizer: Any, prompt: str = "The capital of France is", tokens: int = 8
) -> str:
    """The ``tokens`` most likely next tokens after ``prompt`` (greedy decoding), as text.

    A quick check that a pruned model still writes sensible text: the dense SmolLM2-135M
    continues "The capital of France is" with " Paris.".
    """
    if tokens < 1:
        raise ConfigError(f"tokens must be >= 1, got {tokens}")
    device = next(model.parameters()).device
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"].to(device)
    with eval_mode(model), torch.no_grad():
        for _ in range(tokens):
            next_id = logits_of(model(ids))[0, -1].argmax()
            ids = torch.cat([ids, next_id.view(1, 1)], dim=1)
    text: str = tokenizer.decode(ids[0, -tokens:], skip_special_tokens=True)
    return text
