"""Tiny random-initialised transformers of the real architectures (no downloads)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunekit.compat.torchvision_shim import ensure_torchvision_ops

ensure_torchvision_ops()
transformers = pytest.importorskip("transformers")

VOCAB = 96


@pytest.fixture
def tiny_llama() -> nn.Module:
    """A LLaMA decoder with grouped-query attention (4 query heads, 2 key/value heads)."""
    return build_tiny_llama()


def build_tiny_llama(tie: bool = True) -> nn.Module:
    """The ``tiny_llama`` fixture's model; ``tie=False`` gives it its own output layer."""
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=tie,
    )
    return transformers.LlamaForCausalLM(config).eval()


@pytest.fixture
def tiny_bert() -> nn.Module:
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    return transformers.BertModel(config).eval()


@pytest.fixture
def windows() -> torch.Tensor:
    return torch.randint(0, VOCAB, (4, 16), generator=torch.Generator().manual_seed(1))


@pytest.fixture
def char_tokenizer() -> object:
    """A character-level fast tokenizer over printable ASCII (ids < VOCAB), with padding."""
    tokenizers = pytest.importorskip("tokenizers")
    vocab = {chr(c): c - 31 for c in range(32, 126)}  # ' ' .. '}' -> 1 .. 94
    vocab.update({"[PAD]": 0, "[UNK]": 95})
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Split("", "isolated")
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]"
    )
