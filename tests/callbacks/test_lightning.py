import pytest
import torch
from torch import nn

from prunekit.compat.torchvision_shim import ensure_torchvision_ops

ensure_torchvision_ops()
pl = pytest.importorskip("lightning.pytorch")

from prunekit.callbacks.lightning import PruningCallback  # noqa: E402
from prunekit.masks import masks_of  # noqa: E402
from prunekit.schedules import OneShot, Stepper  # noqa: E402


class _Module(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 3))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


def test_lightning_callback_prunes_and_training_keeps_zeros(tmp_path) -> None:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 10, generator=g), torch.arange(64) % 3
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    module = _Module()
    stepper = Stepper(OneShot(0.5, step=3), {"scope": "layer"})
    trainer = pl.Trainer(
        max_steps=12,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
        callbacks=[PruningCallback(stepper)],
    )
    trainer.fit(module, loader)
    assert stepper.history == [(3, 0.5)]
    mask = masks_of(module)["net.0.weight"]
    assert int((mask == 0).sum()) == 80
    assert bool((module.net[0].weight[mask == 0] == 0).all())
