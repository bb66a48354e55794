"""Calibration data for one-shot LLM pruning: fixed-length token windows sampled from a text.

The reference code of SparseGPT and Wanda draws ``n`` random windows of ``seq_len`` tokens from a
corpus; :func:`token_windows` does the same on a 1-D token tensor with a seeded generator, so the
same seed gives the same windows. :func:`calibration_windows` reads the text (a file, or a data
set of strings / ``{"text": ...}`` rows) and tokenises it with the model's own tokenizer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from prunekit.errors import ConfigError, DataError

TextSource = str | Path | Iterable[Any]
"""A text file path, or a data set whose rows are strings or mappings with a ``"text"`` field."""


def read_text(source: TextSource) -> str:
    """The text of a file, or the rows of a data set joined by blank lines."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise DataError(f"text file {str(path)!r} does not exist")
        text = path.read_text(encoding="utf-8", errors="replace")
        where = f"text file {str(path)!r}"
    else:
        rows = [row["text"] if isinstance(row, Mapping) else row for row in source]
        bad = next((r for r in rows if not isinstance(r, str)), None)
        if bad is not None:
            raise DataError(
                f"calibration data set rows must be strings or have a 'text' field, got {bad!r}"
            )
        text = "\n\n".join(rows)
        where = "calibration data set"
    if not text.strip():
        raise DataError(f"{where} is empty: calibration and evaluation need text")
    return text


def tokenize(tokenizer: Any, text: str) -> Tensor:
    """The whole text as one 1-D tensor of token ids (no special tokens added)."""
    if not text.strip():
        raise DataError("cannot tokenise an empty text")
    encoded = tokenizer(text, return_tensors="pt", add_special_tokens=False, verbose=False)
    ids = encoded["input_ids"][0]
    if ids.numel() == 0:
        raise DataError("the tokenizer produced no tokens for the text")
    return ids.to(torch.long)


def token_windows(ids: Tensor, *, n_samples: int, seq_len: int, seed: int = 0) -> Tensor:
    """``[n_samples, seq_len]`` windows cut at seeded random offsets of the 1-D ``ids``."""
    if n_samples < 1 or seq_len < 1:
        raise ConfigError(
            f"calibration needs n_samples >= 1 and seq_len >= 1, got {n_samples}, {seq_len}"
        )
    if ids.dim() != 1:
        raise DataError(f"token ids must be 1-D, got shape {tuple(ids.shape)}")
    if ids.numel() < seq_len:
        raise DataError(
            f"the text has {ids.numel()} tokens, fewer than one window of seq_len={seq_len}; "
            "use a longer text or a shorter seq_len"
        )
    generator = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, ids.numel() - seq_len + 1, (n_samples,), generator=generator)
    return torch.stack([ids[s : s + seq_len] for s in starts.tolist()])


def calibration_windows(
    tokenizer: Any,
    source: TextSource,
    *,
    n_samples: int = 32,
    seq_len: int = 512,
    seed: int = 0,
) -> Tensor:
    """Seeded ``[n_samples, seq_len]`` token windows from a text file or data set."""
    ids = tokenize(tokenizer, read_text(source))
    return token_windows(ids, n_samples=n_samples, seq_len=seq_len, seed=seed)
