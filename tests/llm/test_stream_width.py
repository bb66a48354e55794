"""Width pruning streamed from sharded safetensors gives the in-memory path's model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from prunekit.api import prune
from prunekit.errors import ConfigError
from prunekit.llm import WidthPruneConfig, load_pruned, prune_width
from prunekit.llm.shards import INDEX_FILE
from prunekit.llm.stream_width import StreamWidthConfig, prune_width_streaming
from prunekit.llm.streaming import prune_streaming
from prunekit.llm.width_scores import UnitActivation, lm_scoring_data
from prunekit.masks import clone_model

transformers = pytest.importorskip("transformers")


def _save(model: nn.Module, directory: Path) -> Path:
    """Save ``model`` as several safetensors shards (a few KB each) with an index."""
    model.save_pretrained(directory, max_shard_size="20KB")
    assert (directory / INDEX_FILE).is_file()
    return directory


def _assert_same(got: nn.Module, expected: nn.Module) -> None:
    streamed, reference = got.state_dict(), expected.state_dict()
    assert streamed.keys() == reference.keys()
    for name, value in reference.items():
        assert torch.equal(streamed[name], value), name


def test_dense_propagation_equals_in_memory_width_pruning(
    tiny_llama: nn.Module, windows: Tensor, tmp_path: Path
) -> None:
    source = _save(tiny_llama, tmp_path / "src")
    result = prune_width_streaming(
        source,
        tmp_path / "out",
        StreamWidthConfig(width=0.6, propagate="dense"),
        calibration=windows,
        progress=False,
    )
    expected = prune_width(tiny_llama, windows, WidthPruneConfig(sparsity=0.6, of="blocks"))
    assert result.width is not None
    assert result.width["allocation"] == expected.allocation.to_dict()
    # blocks: 2 x (4 x 32 x 32 attention-ish: q 32x32, k 16x32, v 16x32, o 32x32 = 3072
    # + 3 x 64 x 32 MLP = 6144 + 2 x 32 norms) = 18,560; one KV head (1,536) and 40 of 64 neurons
    # (3,840) per block go: 2 x 5,376 = 10,752
    assert result.width["block_params_before"] == 18_560
    assert result.width["params_before"] - result.width["params_after"] == 10_752
    assert result.layer_sparsity["model.layers.1.self_attn.k_proj"] == 0.5
    assert result.layer_sparsity["model.layers.1.mlp.down_proj"] == pytest.approx(40 / 64)
    _assert_same(load_pruned(tmp_path / "out"), expected.model)
    # the config describes the shapes (explicit head_dim), so from_pretrained loads it too
    assert result.width["config_describes_shapes"]
    reloaded = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "out").eval()
    assert (reloaded.config.num_attention_heads, reloaded.config.num_key_value_heads) == (2, 1)
    assert reloaded.config.intermediate_size == 24
    _assert_same(reloaded, expected.model)


def test_magnitude_needs_no_calibration_and_equals_in_memory(
    tiny_llama: nn.Module, tmp_path: Path
) -> None:
    source = _save(tiny_llama, tmp_path / "src")
    config = StreamWidthConfig(width=0.3, of="model", estimator="magnitude")
    result = prune_width_streaming(source, tmp_path / "out", config, progress=False)
    expected = prune_width(
        tiny_llama, None, WidthPruneConfig(sparsity=0.3, of="model", estimator="magnitude")
    )
    assert result.width is not None
    assert result.width["allocation"] == expected.allocation.to_dict()
    _assert_same(load_pruned(tmp_path / "out"), expected.model)


def test_pruned_propagation_equals_pruning_the_blocks_in_turn(
    tiny_llama: nn.Module, windows: Tensor, tmp_path: Path
) -> None:
    """Block k is scored on the outputs of the already narrowed blocks before it: in memory,
    that is width pruning one block after the other on the whole model."""
    source = _save(tiny_llama, tmp_path / "src")
    result = prune_width_streaming(
        source,
        tmp_path / "out",
        StreamWidthConfig(heads=1, mlp=24),
        calibration=windows,
        progress=False,
    )
    model = clone_model(tiny_llama)
    for k in range(2):
        q, gate = f"model.layers.{k}.self_attn.q_proj", f"model.layers.{k}.mlp.gate_proj"
        model = prune(
            model,
            {"input_ids": windows[:1, :32]},
            sparsity=0.0,
            granularity="channel",
            estimator=UnitActivation(),
            data=lm_scoring_data(model, windows),
            scope="layer",
            include=[q, gate],
            overrides={q: 1 / 2, gate: 24 / 64},
            metrics=False,
        ).model
    assert result.width is not None
    assert result.width["allocation"]["heads_removed"] == 1
    assert result.width["allocation"]["mlp_removed"] == 24
    got = load_pruned(tmp_path / "out")
    assert tuple(got.model.layers[1].self_attn.q_proj.weight.shape) == (16, 32)
    assert tuple(got.model.layers[1].mlp.up_proj.weight.shape) == (40, 32)
    _assert_same(got, model)


def test_an_interrupted_run_resumes_to_the_same_bytes(
    tiny_llama: nn.Module, windows: Tensor, tmp_path: Path
) -> None:
    source = _save(tiny_llama, tmp_path / "src")
    config = StreamWidthConfig(width=0.5)
    prune_width_streaming(source, tmp_path / "whole", config, calibration=windows, progress=False)

    def stop(index: int) -> None:
        if index == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prune_width_streaming(
            source, tmp_path / "resumed", config, calibration=windows, progress=False, on_block=stop
        )
    assert (tmp_path / "resumed" / "prunekit_stream_progress.json").is_file()
    assert not (tmp_path / "resumed" / "prunekit_plan.json").exists()
    result = prune_width_streaming(
        source, tmp_path / "resumed", config, calibration=windows, progress=False
    )
    assert result.resumed_from == 1
    assert len(result.layer_sparsity) == 14  # the plan of block 0 survived the interruption
    whole = sorted(p.name for p in (tmp_path / "whole").iterdir())
    assert whole == sorted(p.name for p in (tmp_path / "resumed").iterdir())
    for name in whole:
        assert (tmp_path / "whole" / name).read_bytes() == (
            tmp_path / "resumed" / name
        ).read_bytes()
    _interrupt(source, tmp_path / "other", config, windows)  # block 0 done with width 0.5
    with pytest.raises(ConfigError, match="interrupted run with other settings"):
        prune_width_streaming(
            source,
            tmp_path / "other",
            StreamWidthConfig(width=0.3),
            calibration=windows,
            progress=False,
        )


def _interrupt(source: Path, out: Path, config: StreamWidthConfig, windows: Tensor) -> None:
    def stop(index: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prune_width_streaming(
            source, out, config, calibration=windows, progress=False, on_block=stop
        )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"heads": 2}, "heads=2 removes every head unit: blocks have 2"),
        ({"mlp": 30}, "mlp=30 leaves 34 of 64 MLP neurons per block; .* round_to=8"),
        ({"mlp": 64}, "mlp=64 leaves 0 of 64"),
        ({"width": 0.95}, "cannot remove"),
        ({"width": 0.5, "kinds": ("heads",)}, "cannot remove"),  # 3,072 of 9,280 per block
    ],
)
def test_impossible_widths_are_refused_before_anything_is_written(
    options: dict[str, object], message: str, tiny_llama: nn.Module, windows: Tensor, tmp_path: Path
) -> None:
    source = _save(tiny_llama, tmp_path / "src")
    with pytest.raises(ConfigError, match=message):
        prune_width_streaming(
            source,
            tmp_path / "out",
            StreamWidthConfig(**options),  # type: ignore[arg-type]
            calibration=windows,
            progress=False,
        )
    assert not (tmp_path / "out").exists()


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="either width= .* or heads= / mlp="):
        StreamWidthConfig(width=0.2, heads=1)
    with pytest.raises(ConfigError, match="either width="):
        StreamWidthConfig()
    with pytest.raises(ConfigError, match="'taylor' needs the loss at the model's output"):
        StreamWidthConfig(width=0.2, estimator="taylor")
    with pytest.raises(ConfigError, match="propagate must be"):
        StreamWidthConfig(width=0.2, propagate="later")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="heads must be a count"):
        StreamWidthConfig(heads=-1)


def test_prune_streaming_takes_width_or_counts(
    tiny_llama: nn.Module, windows: Tensor, tmp_path: Path
) -> None:
    source = _save(tiny_llama, tmp_path / "src")
    result = prune_streaming(source, tmp_path / "out", mlp=16, calibration=windows, progress=False)
    assert result.width is not None
    assert result.width["allocation"]["mlp_removed"] == 16
    assert tuple(load_pruned(tmp_path / "out").model.layers[0].mlp.gate_proj.weight.shape) == (
        48,
        32,
    )
    with pytest.raises(ConfigError, match="method= / sparsity= / pattern= prune weights"):
        prune_streaming(
            source, tmp_path / "x", width=0.2, method="wanda", calibration=windows, progress=False
        )
    assert not (tmp_path / "x").exists()


def test_a_head_count_the_config_refuses_loads_with_load_pruned(
    windows: Tensor, tmp_path: Path
) -> None:
    """4 heads without GQA, one removed: LLaMA's config refuses 3 heads for hidden size 32, so
    the written config keeps num_attention_heads=4 and only load_pruned rebuilds the model."""
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=96,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=64,
    )
    dense = transformers.LlamaForCausalLM(config).eval()
    source = _save(dense, tmp_path / "src")
    result = prune_width_streaming(
        source,
        tmp_path / "out",
        StreamWidthConfig(heads=1, propagate="dense"),
        calibration=windows,
        progress=False,
    )
    assert result.width is not None
    assert result.width["config_describes_shapes"] is False
    loaded = load_pruned(tmp_path / "out")
    assert tuple(loaded.model.layers[0].self_attn.q_proj.weight.shape) == (24, 32)
    reference = prune(
        dense,
        {"input_ids": windows[:1, :32]},
        sparsity=0.0,
        granularity="channel",
        estimator=UnitActivation(),
        data=lm_scoring_data(dense, windows),
        scope="layer",
        include=["*.self_attn.q_proj"],
        overrides={"*.self_attn.q_proj": 1 / 4},
        metrics=False,
    ).model
    _assert_same(loaded, reference)
    with torch.no_grad():
        ids = windows[:1]
        assert torch.allclose(loaded(ids).logits, reference(ids).logits, atol=1e-6)
