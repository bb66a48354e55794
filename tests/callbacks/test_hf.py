import pytest
import torch
from torch import nn

from prunekit.compat.torchvision_shim import ensure_torchvision_ops

ensure_torchvision_ops()
pytest.importorskip("transformers")

from transformers import Trainer, TrainingArguments  # noqa: E402

from prunekit.callbacks.hf import PruningCallback  # noqa: E402
from prunekit.masks import masks_of  # noqa: E402
from prunekit.schedules import Polynomial, Stepper  # noqa: E402


class _Classifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 3))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict:
        logits = self.body(x)
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = nn.functional.cross_entropy(logits, labels)
        return out


def test_trainer_callback_prunes_on_schedule(tmp_path) -> None:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    data = [{"x": torch.randn(10, generator=g), "labels": i % 3} for i in range(64)]
    model = _Classifier()
    stepper = Stepper(Polynomial(0.75, begin_step=0, end=12, frequency=2), {"exclude": ["body.2"]})
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=16,
        per_device_train_batch_size=8,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        learning_rate=1e-2,
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=data, callbacks=[PruningCallback(stepper)]
    )
    trainer.train()
    mask = masks_of(model)["body.0.weight"]
    assert int((mask == 0).sum()) == 120
    assert bool((model.body[0].weight[mask == 0] == 0).all())
    assert stepper.history[-1] == (12, 0.75)
