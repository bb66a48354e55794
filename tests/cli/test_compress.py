"""``prunekit compress`` on a save of a 90%-sparse MLP: smaller file, exact weights back."""

from __future__ import annotations

from pathlib import Path

import torch
from typer.testing import CliRunner

import prunekit
from prunekit.cli.main import app
from prunekit.models import build_model
from prunekit.sparse import load_compressed


def test_compress_a_saved_sparse_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("lenet-300-100")
    result = prunekit.prune(model, sparsity=0.9)
    prunekit.save(result, tmp_path / "bare")
    done = CliRunner().invoke(app, ["compress", str(tmp_path / "bare")])
    assert done.exit_code != 0 and "error:" in done.output  # no architecture recorded
    prunekit.save(result, tmp_path / "arch", arch={"model": "lenet-300-100"})
    done = CliRunner().invoke(app, ["compress", str(tmp_path / "arch")])
    assert done.exit_code == 0, done.output
    ratio = float(done.output.split("MB, ")[1].split("x")[0])
    assert ratio < 0.2
    state = load_compressed(tmp_path / "arch" / "model.compressed.safetensors")
    prunekit.bake_masks(result.model)
    expected = result.model.state_dict()
    assert state.keys() == expected.keys()
    assert all(torch.equal(state[k], expected[k]) for k in expected)
