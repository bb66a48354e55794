"""hf:DIR: a local Hugging Face directory, its head class, weights, tokenizer and config kwargs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from prunekit.compat.torchvision_shim import ensure_torchvision_ops
from prunekit.sources import SourceError, load_model

ensure_torchvision_ops()
transformers = pytest.importorskip("transformers")


def test_head_class_comes_from_config_architectures(tiny_bert_dir: Path) -> None:
    source = load_model(f"hf:{tiny_bert_dir}")
    assert type(source.model).__name__ == "BertForSequenceClassification"
    assert (source.family, source.spec) == ("hf", f"hf:{tiny_bert_dir.resolve()}")
    assert source.input_shape is None and source.tokenizer is None
    saved = load_file(tiny_bert_dir / "model.safetensors")
    own = source.model.state_dict()
    assert all(torch.equal(own[name], tensor) for name, tensor in saved.items())
    logits = source.model(torch.tensor([[101, 7592, 102]])).logits
    assert logits.shape == (1, 3)


def test_unknown_architecture_falls_back_to_automodel(tiny_bert_dir: Path, tmp_path: Path) -> None:
    directory = tmp_path / "bert"
    shutil.copytree(tiny_bert_dir, directory)
    config = json.loads((directory / "config.json").read_text())
    config["architectures"] = ["NoSuchHeadClass"]
    (directory / "config.json").write_text(json.dumps(config))
    source = load_model(f"hf:{directory}")
    assert type(source.model).__name__ == "BertModel"


def test_tokenizer_is_loaded_when_the_directory_has_one(tiny_bert_with_tokenizer: Path) -> None:
    source = load_model(f"hf:{tiny_bert_with_tokenizer}")
    assert source.tokenizer is not None
    # BERT uncased WordPiece: [CLS]=101, "hello"=7592, [SEP]=102
    assert source.tokenizer("Hello")["input_ids"] == [101, 7592, 102]


def test_kwargs_override_the_config_and_weights_come_from_a_file(tiny_bert_dir: Path) -> None:
    with pytest.raises(SourceError) as caught:
        load_model(
            f"hf:{tiny_bert_dir}",
            kwargs={"num_labels": 5},
            weights=tiny_bert_dir / "model.safetensors",
        )
    assert "classifier.weight (model [5, 32], file [3, 32])" in str(caught.value)
    source = load_model(f"hf:{tiny_bert_dir}", weights=tiny_bert_dir)
    assert source.rebuild_spec == {"source": f"hf:{tiny_bert_dir.resolve()}", "kwargs": {}}


def test_tied_output_embedding_may_be_absent_from_the_file(tmp_path: Path) -> None:
    config = transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=100, n_positions=64)
    transformers.GPT2LMHeadModel(config).save_pretrained(tmp_path)
    assert "lm_head.weight" not in load_file(tmp_path / "model.safetensors")
    source = load_model(f"hf:{tmp_path}", weights=tmp_path)
    model = source.model
    assert type(model).__name__ == "GPT2LMHeadModel"
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()


def test_vision_config_gives_an_input_shape(tmp_path: Path) -> None:
    config = transformers.ViTConfig(
        image_size=32,
        patch_size=8,
        num_channels=3,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=4,
    )
    transformers.ViTForImageClassification(config).save_pretrained(tmp_path)
    source = load_model(f"hf:{tmp_path}")
    assert source.input_shape == (1, 3, 32, 32)
    assert source.model(torch.randn(source.input_shape)).logits.shape == (1, 4)


def test_directory_errors(tiny_bert_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"^hf:.*nowhere: no such directory$"):
        load_model(f"hf:{tmp_path / 'nowhere'}")
    with pytest.raises(SourceError, match=r"no config.json in"):
        load_model(f"hf:{tmp_path}")
    bare = tmp_path / "config-only"
    bare.mkdir()
    shutil.copy(tiny_bert_dir / "config.json", bare / "config.json")
    with pytest.raises(SourceError, match="no weights in the directory .*pass weights="):
        load_model(f"hf:{bare}")
    with pytest.raises(SourceError, match="dtype 'float99' is not a torch dtype"):
        load_model(f"hf:{tiny_bert_dir}", kwargs={"dtype": "float99"})
    with pytest.raises(SourceError, match=f"write 'hf:{tiny_bert_dir}'"):
        load_model(str(tiny_bert_dir))
