"""Streaming layer-wise pruning from sharded safetensors gives the in-memory path's weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from prunekit.errors import ConfigError, DataError, UnsupportedLayerError
from prunekit.llm import LLMPruneConfig, prune_llm
from prunekit.llm.shards import INDEX_FILE, ShardedCheckpoint
from prunekit.llm.streaming import prune_streaming

transformers = pytest.importorskip("transformers")


def _save(model: nn.Module, directory: Path, dtype: torch.dtype = torch.float32) -> Path:
    """Save ``model`` as several safetensors shards (a few KB each) with an index."""
    model.to(dtype).save_pretrained(directory, max_shard_size="20KB")
    assert (directory / INDEX_FILE).is_file()
    return directory


def _load(directory: Path) -> nn.Module:
    return transformers.LlamaForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()


def _written(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("*.safetensors")) if directory.exists() else []


@pytest.mark.parametrize(
    ("method", "pattern"),
    [("wanda", None), ("sparsegpt", None), ("magnitude", None), ("wanda", "2:4")],
)
def test_streaming_equals_in_memory_pruning(
    method: str, pattern: str | None, tiny_llama: nn.Module, windows: Tensor, tmp_path: Path
) -> None:
    source = _save(tiny_llama, tmp_path / "src")
    result = prune_streaming(
        source,
        tmp_path / "out",
        method=method,
        pattern=pattern,
        calibration=windows,
        progress=False,
    )
    config = LLMPruneConfig(method=method, pattern=pattern, bake=True)
    expected = prune_llm(tiny_llama, windows, config, progress=False)
    assert result.layer_sparsity == pytest.approx(expected.layer_sparsity)
    assert result.sparsity == pytest.approx(0.5)
    streamed = _load(tmp_path / "out").state_dict()
    reference = expected.model.state_dict()
    assert streamed.keys() == reference.keys()
    for name, value in reference.items():
        assert torch.equal(streamed[name], value), name
    # one shard for the embeddings and norm, one per block; config copied
    assert _written(tmp_path / "out") == [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    assert (tmp_path / "out" / "config.json").is_file()
    assert not list((tmp_path / "out").glob("prunekit_stream*"))


def test_bf16_shards_are_pruned_in_float32_and_written_back_in_bf16(
    tiny_llama: nn.Module, windows: Tensor, tmp_path: Path
) -> None:
    source = _save(tiny_llama, tmp_path / "src", torch.bfloat16)
    prune_streaming(source, tmp_path / "out", calibration=windows, progress=False)
    out = ShardedCheckpoint(tmp_path / "out")
    assert {info.dtype for info in out.info.values()} == {"BF16"}
    q = out.load(["model.layers.1.self_attn.q_proj.weight"])[
        "model.layers.1.self_attn.q_proj.weight"
    ]
    assert q.shape == (32, 32) and int((q == 0).sum(dim=1).min()) == 16  # half of every row
    dense = tiny_llama.to(torch.float32)
    expected = prune_llm(dense, windows, LLMPruneConfig(bake=True), progress=False).model
    # same masks as pruning the bf16 weights (upcast) in memory
    mask = expected.get_parameter("model.layers.1.self_attn.q_proj.weight") != 0
    assert torch.equal(q != 0, mask)


def test_an_interrupted_run_resumes_to_the_same_bytes(
    tiny_llama: nn.Module, windows: Tensor, tmp_path: Path
) -> None:
    source = _save(tiny_llama, tmp_path / "src")
    prune_streaming(
        source, tmp_path / "whole", method="sparsegpt", calibration=windows, progress=False
    )

    def stop(index: int) -> None:
        if index == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prune_streaming(
            source,
            tmp_path / "resumed",
            method="sparsegpt",
            calibration=windows,
            progress=False,
            on_block=stop,
        )
    assert (tmp_path / "resumed" / "prunekit_stream_progress.json").is_file()
    result = prune_streaming(
        source, tmp_path / "resumed", method="sparsegpt", calibration=windows, progress=False
    )
    assert result.resumed_from == 1
    assert len(result.layer_sparsity) == 14  # 7 Linears in each of the 2 blocks
    whole = sorted(p.name for p in (tmp_path / "whole").iterdir())
    assert whole == sorted(p.name for p in (tmp_path / "resumed").iterdir())
    for name in whole:
        assert (tmp_path / "whole" / name).read_bytes() == (
            tmp_path / "resumed" / name
        ).read_bytes()


def test_resume_with_other_settings_and_a_finished_directory_are_refused(
    tiny_llama: nn.Module, windows: Tensor, tmp_path: Path
) -> None:
    source = _save(tiny_llama, tmp_path / "src")

    def stop(index: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prune_streaming(
            source, tmp_path / "out", calibration=windows, progress=False, on_block=stop
        )
    with pytest.raises(ConfigError, match="interrupted run with other settings"):
        prune_streaming(source, tmp_path / "out", sparsity=0.6, calibration=windows, progress=False)
    prune_streaming(source, tmp_path / "done", calibration=windows, progress=False)
    with pytest.raises(ConfigError, match="already holds a finished model"):
        prune_streaming(source, tmp_path / "done", calibration=windows, progress=False)


def test_missing_and_corrupt_shards_are_refused_before_writing(
    tiny_llama: nn.Module, windows: Tensor, tmp_path: Path
) -> None:
    source = _save(tiny_llama, tmp_path / "src")
    shards = sorted(source.glob("*.safetensors"))
    truncated = shards[1].read_bytes()[:-3]
    shards[1].write_bytes(truncated)
    with pytest.raises(
        DataError, match="is not a readable safetensors file: .*incomplete metadata"
    ):
        prune_streaming(source, tmp_path / "out", calibration=windows, progress=False)
    shards[1].write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00not json")
    with pytest.raises(DataError, match="is not a readable safetensors file"):
        prune_streaming(source, tmp_path / "out", calibration=windows, progress=False)
    shards[1].unlink()
    with pytest.raises(DataError, match="listed in the index does not exist"):
        prune_streaming(source, tmp_path / "out", calibration=windows, progress=False)
    assert _written(tmp_path / "out") == []


def test_a_block_without_pruning_rules_is_refused_before_writing(
    windows: Tensor, tmp_path: Path
) -> None:
    config = transformers.GPT2Config(vocab_size=96, n_embd=32, n_layer=2, n_head=4, n_positions=64)
    _save(transformers.GPT2LMHeadModel(config), tmp_path / "src")
    with pytest.raises(UnsupportedLayerError, match=r"layer transformer\.h\.0\.attn\.c_attn"):
        prune_streaming(tmp_path / "src", tmp_path / "out", calibration=windows, progress=False)
    assert _written(tmp_path / "out") == []


def test_nm_pattern_that_does_not_divide_the_widths_is_refused(
    tiny_llama: nn.Module, windows: Tensor, tmp_path: Path
) -> None:
    source = _save(tiny_llama, tmp_path / "src")
    with pytest.raises(ConfigError, match=r"divisible by 6; layer model\.layers\.0\.self_attn"):
        prune_streaming(
            source, tmp_path / "out", pattern="3:6", calibration=windows, progress=False
        )
    assert _written(tmp_path / "out") == []


def test_calibration_with_too_few_tokens_is_refused(
    tiny_llama: nn.Module, char_tokenizer: object, tmp_path: Path
) -> None:
    source = _save(tiny_llama, tmp_path / "src")
    char_tokenizer.save_pretrained(source)  # type: ignore[attr-defined]
    text = tmp_path / "calib.txt"
    text.write_text("short text")
    with pytest.raises(DataError, match="the text has 10 tokens, fewer than one window"):
        prune_streaming(source, tmp_path / "out", calibration=text, seq_len=16, progress=False)
    with pytest.raises(DataError, match=r"integers in \[0, 96\)"):
        prune_streaming(
            source, tmp_path / "out", calibration=torch.full((2, 8), 96), progress=False
        )
    with pytest.raises(DataError, match="needs calibration data"):
        prune_streaming(source, tmp_path / "out", progress=False)
    assert _written(tmp_path / "out") == []
    result = prune_streaming(
        source, tmp_path / "out", calibration=text, seq_len=4, n_samples=2, progress=False
    )
    assert result.sparsity == pytest.approx(0.5)


def test_an_untied_output_head_is_copied_unchanged(windows: Tensor, tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=96,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=False,
    )
    model = transformers.LlamaForCausalLM(config).eval()
    source = _save(model, tmp_path / "src")
    prune_streaming(
        source, tmp_path / "out", method="sparsegpt", calibration=windows, progress=False
    )
    expected = prune_llm(
        model, windows, LLMPruneConfig(method="sparsegpt", bake=True), progress=False
    ).model.state_dict()
    streamed = _load(tmp_path / "out").state_dict()
    assert torch.equal(streamed["lm_head.weight"], model.lm_head.weight)
    for name, value in expected.items():
        assert torch.equal(streamed[name], value), name
