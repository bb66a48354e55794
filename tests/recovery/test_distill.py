import math

import pytest
import torch
from torch import nn

from prunekit.errors import ConfigError
from prunekit.recovery import DistillConfig, distillation_loss, feature_loss, soft_kl


def test_soft_kl_hand_worked() -> None:
    # T = 1: teacher p = softmax([0, ln 3]) = [1/4, 3/4]; student q = [1/2, 1/2]
    # KL(p || q) = 1/4 ln(1/2) + 3/4 ln(3/2)
    student = torch.tensor([[0.0, 0.0]])
    teacher = torch.tensor([[0.0, math.log(3.0)]])
    expected = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    assert float(soft_kl(student, teacher, 1.0)) == pytest.approx(expected)
    # T = 2 halves the logits: p = softmax([0, ln 3 / 2]) = [1/(1+√3), √3/(1+√3)], times T^2 = 4
    a = 1 / (1 + math.sqrt(3))
    expected_t2 = 4 * (a * math.log(a / 0.5) + (1 - a) * math.log((1 - a) / 0.5))
    assert float(soft_kl(student, teacher, 2.0)) == pytest.approx(expected_t2)


def test_distillation_mixes_soft_and_hard_terms() -> None:
    student = torch.tensor([[0.0, 0.0]])
    teacher = torch.tensor([[0.0, math.log(3.0)]])
    targets = torch.tensor([1])
    soft = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    hard = math.log(2.0)  # cross-entropy of [1/2, 1/2] on class 1
    loss = distillation_loss(student, teacher, targets, DistillConfig(alpha=0.25, temperature=1))
    assert float(loss) == pytest.approx(0.25 * soft + 0.75 * hard)
    assert float(soft_kl(teacher, teacher, 3.0)) == pytest.approx(0.0, abs=1e-7)


def test_feature_loss_and_validation() -> None:
    assert float(feature_loss(torch.ones(2, 3), torch.zeros(2, 3))) == 1.0
    with pytest.raises(ConfigError):
        feature_loss(torch.ones(2, 3), torch.zeros(2, 4))
    with pytest.raises(ConfigError):
        DistillConfig(alpha=1.5)


def test_finetune_with_distillation_and_feature_adapter() -> None:
    from prunekit import prune
    from prunekit.recovery import FinetuneConfig, finetune

    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 3))
    student = nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 3))
    data = [
        (torch.randn(16, 10, generator=torch.Generator().manual_seed(i)), torch.arange(16) % 3)
        for i in range(4)
    ]
    result = finetune(
        student,
        data,
        data,
        FinetuneConfig(epochs=3, lr=1e-2, progress=False),
        teacher=teacher,
        distill=DistillConfig(feature_weight=1.0),
        features={"1": "1"},
    )
    assert len(result.history) == 3 and 1 <= result.best_epoch <= 3
    assert result.best_accuracy == max(r.eval_accuracy for r in result.history)
    assert all(p.requires_grad for p in teacher.parameters())  # the user's teacher is untouched
    masked = prune(teacher, sparsity=0.5).model
    result = finetune(masked, data, data, FinetuneConfig(epochs=2, progress=False))
    assert float((masked[0].weight == 0).float().mean()) >= 0.4


def _mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def _batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=gen)
    return [(x[i : i + 16], torch.randint(0, 3, (16,), generator=gen)) for i in range(0, 64, 16)]


def test_train_distilled_with_alpha_zero_is_plain_training() -> None:
    from prunekit.recovery import train_distilled
    from prunekit.train import train

    plain, distilled, teacher = _mlp(0), _mlp(0), _mlp(1)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    stats = train(plain, _batches(), epochs=2, lr=0.01, progress=False)
    distilled_stats = train_distilled(
        distilled, teacher, _batches(), DistillConfig(alpha=0.0), epochs=2, lr=0.01, progress=False
    )
    assert distilled_stats.steps == stats.steps == 8
    for a, b in zip(plain.parameters(), distilled.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())


def test_train_distilled_moves_the_student_towards_the_teacher() -> None:
    from prunekit.recovery import train_distilled

    student, teacher = _mlp(0), _mlp(1)
    x = torch.cat([b[0] for b in _batches()])

    def gap() -> float:
        with torch.no_grad():
            return float(soft_kl(student(x), teacher(x), 1.0))

    start = gap()
    train_distilled(
        student,
        teacher,
        _batches(),
        DistillConfig(alpha=1.0, temperature=1.0),
        epochs=20,
        lr=0.01,
        progress=False,
    )
    assert gap() < 0.2 * start
    with pytest.raises(ConfigError, match="loss_fn"):
        train_distilled(student, teacher, _batches(), loss_fn=lambda o, t: o.sum())


def test_train_distilled_refuses_a_teacher_with_other_outputs() -> None:
    from prunekit.recovery import train_distilled

    student = _mlp(0)
    before = [p.clone() for p in student.parameters()]
    teacher = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 5))
    with pytest.raises(ConfigError, match=r"outputs \(16, 3\) and the teacher's \(16, 5\)"):
        train_distilled(student, teacher, _batches(), progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, student.parameters(), strict=True))


def test_finetune_takes_a_loss_with_a_penalty() -> None:
    from prunekit.methods import bn_scale_penalty, with_penalty
    from prunekit.recovery import FinetuneConfig, finetune

    def cnn() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3)
        )

    gen = torch.Generator().manual_seed(0)
    data = [(torch.randn(8, 1, 6, 6, generator=gen), torch.randint(0, 3, (8,), generator=gen))]
    config = FinetuneConfig(epochs=20, lr=0.01, keep_best=False, progress=False)
    plain, slimmed = cnn(), cnn()
    finetune(plain, data, None, config)
    finetune(slimmed, data, None, config, loss_fn=with_penalty(bn_scale_penalty, slimmed, 1.0))
    # Adam moves each scale by at most ~lr per step: 4 scales, 20 steps, cosine LR
    assert float(bn_scale_penalty(slimmed)) < float(bn_scale_penalty(plain)) - 0.4
    with pytest.raises(ConfigError, match="not both"):
        finetune(plain, data, None, config, teacher=cnn(), loss_fn=nn.functional.cross_entropy)
