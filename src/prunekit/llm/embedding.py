"""Sentence-embedding retention of a pruned encoder (e.g. all-MiniLM-L6-v2) against the dense one.

A sentence encoder is used through the similarities of its embeddings, so a pruned encoder is
judged on real sentences by (1) the cosine similarity of each sentence's pruned embedding to its
dense embedding, and (2) the Spearman rank correlation between the pairwise sentence-similarity
matrices of the two models (upper triangle): does the pruned model still rank sentence pairs as
the dense one does? Embeddings are mean-pooled over the tokens of the attention mask, as
sentence-transformers does for all-MiniLM-L6-v2.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from scipy.stats import spearmanr
from torch import Tensor, nn

from prunekit.errors import ConfigError, DataError
from prunekit.llm.calibration import TextSource, read_text
from prunekit.measure.inputs import eval_mode

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def read_sentences(
    source: TextSource, *, n: int = 256, min_words: int = 8, max_words: int = 64
) -> list[str]:
    """The first ``n`` sentences of ``min_words``..``max_words`` words of a text.

    Lines that are WikiText headings (``= Title =``) are skipped; paragraphs are split after
    ``.``, ``!`` or ``?``. Deterministic: the same text gives the same sentences.
    """
    if n < 2:
        raise ConfigError(f"need at least 2 sentences to compare similarities, got n={n}")
    sentences: list[str] = []
    for line in read_text(source).splitlines():
        line = line.strip()
        if not line or line.startswith("="):
            continue
        for sentence in _SENTENCE_END.split(line):
            if min_words <= len(sentence.split()) <= max_words:
                sentences.append(sentence)
                if len(sentences) == n:
                    return sentences
    if len(sentences) < 2:
        raise DataError(
            f"found {len(sentences)} sentence(s) of {min_words}-{max_words} words in the text; "
            "need at least 2"
        )
    return sentences


def _hidden_states(output: Any) -> Tensor:
    hidden = getattr(output, "last_hidden_state", None)
    if isinstance(hidden, Tensor):
        return hidden
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        return output[0]
    raise DataError(
        f"the model returned {type(output).__name__} without hidden states; sentence "
        "embeddings need an encoder (AutoModel), not a language-model head"
    )


def sentence_embeddings(
    model: nn.Module,
    tokenizer: Any,
    sentences: Sequence[str],
    *,
    batch_size: int = 32,
    max_length: int = 128,
) -> Tensor:
    """``[len(sentences), hidden]`` mean-pooled (attention-masked) last hidden states.

    Sentences are truncated to ``max_length`` tokens, and at most the model's position limit.
    """
    if not sentences:
        raise DataError("no sentences to embed")
    positions = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if isinstance(positions, int):
        max_length = min(max_length, positions)
    device = next(model.parameters()).device
    out = []
    with eval_mode(model), torch.no_grad():
        for start in range(0, len(sentences), batch_size):
            batch = tokenizer(
                list(sentences[start : start + batch_size]),
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            ).to(device)
            hidden = _hidden_states(model(**batch)).float()
            mask = batch["attention_mask"][..., None].to(hidden.dtype)
            out.append((hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0))
    return torch.cat(out).cpu()


@dataclass(frozen=True)
class EmbeddingRetention:
    """How close a pruned encoder's embeddings stay to the dense one's (1.0 = identical).

    Attributes:
        mean_cosine / min_cosine: cosine of pruned vs dense embedding, per sentence.
        spearman: rank correlation of the two pairwise cosine-similarity matrices (i < j).
        sentences: how many sentences were compared.
    """

    mean_cosine: float
    min_cosine: float
    spearman: float
    sentences: int


def _pairwise(embeddings: Tensor) -> Tensor:
    unit = torch.nn.functional.normalize(embeddings.double(), dim=-1)
    sims = unit @ unit.T
    rows, cols = torch.triu_indices(len(unit), len(unit), offset=1)
    return sims[rows, cols]


def embedding_retention(dense: Tensor, pruned: Tensor) -> EmbeddingRetention:
    """Compare ``[n, hidden]`` embeddings of the same sentences by two models (module docstring)."""
    if dense.shape != pruned.shape or dense.dim() != 2 or dense.shape[0] < 2:
        raise DataError(
            f"need two [n >= 2, hidden] embedding tensors of one shape, got "
            f"{tuple(dense.shape)} and {tuple(pruned.shape)}"
        )
    cos = torch.nn.functional.cosine_similarity(dense.double(), pruned.double(), dim=-1)
    rho = spearmanr(_pairwise(dense).numpy(), _pairwise(pruned).numpy()).statistic
    return EmbeddingRetention(float(cos.mean()), float(cos.min()), float(rho), int(dense.shape[0]))
