import copy

import pytest
import torch

from prunekit.core import SelectionConfig, select
from prunekit.data import load_dataset, make_loader
from prunekit.estimators import as_scoring_data, get_estimator
from prunekit.graph import build_structural_groups
from prunekit.models import build_model
from prunekit.recovery import recalibrate_batchnorm
from prunekit.surgery import apply_surgery
from prunekit.train import evaluate, seed_everything, train


@pytest.fixture(scope="module")
def pruned_digits_cnn():
    """A small VGG trained on scikit-learn digits, then 50% of its channels removed."""
    seed_everything(0)
    train_set, test_set = load_dataset("digits", "train"), load_dataset("digits", "test")
    train_loader = make_loader(train_set, 64, shuffle=True, seed=0)
    test_loader = make_loader(test_set, 512)
    model = build_model("small-vgg", in_size=8, width=8, num_stages=2)
    train(model, train_loader, epochs=4, lr=3e-3, progress=False)
    groups = build_structural_groups(model, torch.zeros(1, 1, 8, 8))
    scores = get_estimator("magnitude").score(model, groups, as_scoring_data(None, None, None))
    selection = select(scores, groups, SelectionConfig(sparsity=0.5, scope="layer"))
    pruned, _ = apply_surgery(model, groups, selection)
    return model, pruned, train_loader, test_loader


def test_recalibration_changes_only_running_stats(pruned_digits_cnn) -> None:
    _, pruned, train_loader, _ = pruned_digits_cnn
    pruned = copy.deepcopy(pruned)  # unmasked (surgery), so deepcopy is safe
    params = {n: p.detach().clone() for n, p in pruned.named_parameters()}
    stats = {n: b.detach().clone() for n, b in pruned.named_buffers() if "running" in n}
    pruned.eval()
    seen = recalibrate_batchnorm(pruned, train_loader, max_batches=10)
    assert seen == 640
    assert not pruned.training  # modes restored
    for n, p in pruned.named_parameters():
        assert torch.equal(p, params[n]), n
    changed = [
        n for n, b in pruned.named_buffers() if "running" in n and not torch.equal(b, stats[n])
    ]
    assert len(changed) == len(stats)
    assert all(m.momentum == 0.1 for m in pruned.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_recalibration_lifts_accuracy_of_channel_pruned_cnn(pruned_digits_cnn) -> None:
    dense, pruned, train_loader, test_loader = pruned_digits_cnn
    pruned = copy.deepcopy(pruned)
    dense_acc = evaluate(dense, test_loader).accuracy
    before = evaluate(pruned, test_loader).accuracy
    recalibrate_batchnorm(pruned, train_loader, max_batches=20)
    after = evaluate(pruned, test_loader).accuracy
    print(f"dense {dense_acc:.3f} pruned {before:.3f} recalibrated {after:.3f}")
    assert dense_acc > 0.9
    assert after > before + 0.1
