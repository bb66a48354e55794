import contextlib

import pytest
import torch
from torch import nn

from prunekit.errors import ConfigError
from prunekit.masks import masks_of
from prunekit.methods import TicketConfig, find_ticket, original_state
from prunekit.schedules import schedule_config
from prunekit.train import train


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 3))


DATA = [
    (torch.randn(8, 10, generator=torch.Generator().manual_seed(i)), torch.arange(8) % 3)
    for i in range(4)
]


def _run(config: TicketConfig):
    model = _mlp()
    init = original_state(model)
    starts: list[dict[str, torch.Tensor]] = []
    states: list[dict[str, torch.Tensor]] = []

    def train_round(m: nn.Module, k: int, on_step) -> None:
        starts.append(
            {
                n: p.detach().clone()
                for n, p in (("0.weight", m[0].weight), ("2.weight", m[2].weight))
            }
        )
        states.append(original_state(m))
        train(m, DATA, epochs=2, lr=1e-2, progress=False, on_step=on_step)

    result = find_ticket(model, train_round, config)
    return model, init, starts, result


def test_rewind_to_init_restores_kept_weights_exactly() -> None:
    model, init, starts, result = _run(TicketConfig(final_sparsity=0.75, rounds=2))
    assert [r.sparsity for r in result.rounds] == [0.0, 0.5, 0.75]
    masks = masks_of(model)
    for name in ("0.weight", "2.weight"):
        # at the start of the last round the effective weight is init * final mask, bitwise
        assert torch.equal(starts[-1][name], init[name] * masks[name])
    assert abs(result.rounds[-1].weights_left - 0.25) < 0.01


def test_late_rewinding_uses_weights_after_k_steps() -> None:
    model, init, starts, result = _run(TicketConfig(final_sparsity=0.5, rounds=1, rewind_step=3))
    rewound = result.rewind_state["0.weight"]
    assert not torch.equal(rewound, init["0.weight"])
    assert torch.equal(starts[-1]["0.weight"], rewound * masks_of(model)["0.weight"])


def test_random_reinit_control_keeps_masks_but_not_weights() -> None:
    model, init, starts, _ = _run(TicketConfig(final_sparsity=0.5, rounds=1, reinit=True))
    mask = masks_of(model)["0.weight"]
    assert not torch.equal(starts[-1]["0.weight"], init["0.weight"] * mask)
    assert bool((starts[-1]["0.weight"][mask == 0] == 0).all())
    assert int((starts[-1]["0.weight"][mask == 1] != 0).sum()) == int(mask.sum())


def test_resume_after_finished_rounds(tmp_path) -> None:
    config = TicketConfig(final_sparsity=0.75, rounds=2)
    model_a, _, _, res_a = _run(config)
    calls: list[int] = []

    def interrupted(m: nn.Module, k: int, on_step) -> None:
        if k == 2:
            raise KeyboardInterrupt
        calls.append(k)
        train(m, DATA, epochs=2, lr=1e-2, progress=False, on_step=on_step)

    model_b = _mlp()
    with contextlib.suppress(KeyboardInterrupt):
        find_ticket(model_b, interrupted, config, checkpoint_dir=tmp_path)
    model_c = _mlp()

    def resumed(m: nn.Module, k: int, on_step) -> None:
        calls.append(k)
        train(m, DATA, epochs=2, lr=1e-2, progress=False, on_step=on_step)

    res_c = find_ticket(model_c, resumed, config, checkpoint_dir=tmp_path)
    assert calls == [0, 1, 2]
    assert [r.sparsity for r in res_c.rounds] == [r.sparsity for r in res_a.rounds]
    for (n, a), c in zip(model_a.state_dict().items(), model_c.state_dict().values(), strict=True):
        assert torch.equal(a, c), n


def test_prune_options_are_a_schedule_config() -> None:
    assert TicketConfig().prune == schedule_config()
    with pytest.raises(ConfigError) as err:
        TicketConfig(prune={"sparsity": 0.5})
    assert str(err.value) == (
        "TicketConfig.prune: the schedule decides the sparsity; remove 'sparsity' from the config"
    )


def test_channel_tickets_prune_rows_per_layer() -> None:
    model, _, _, result = _run(
        TicketConfig(final_sparsity=0.75, rounds=2, prune={"granularity": "channel"})
    )
    masks = masks_of(model)
    # auto scope is per layer for channels: round(0.75 * 16) = 12 rows, round(0.75 * 3) = 2 rows
    assert [int((masks[f"{i}.weight"].sum(dim=1) == 0).sum()) for i in (0, 2)] == [12, 2]
    assert [r.sparsity for r in result.rounds] == [0.0, 0.5, 0.75]


def test_checkpoint_refuses_other_prune_options(tmp_path) -> None:
    def train_round(m: nn.Module, k: int, on_step) -> None:
        train(m, DATA, epochs=1, lr=1e-2, progress=False, on_step=on_step)

    find_ticket(_mlp(), train_round, TicketConfig(0.5, rounds=1), checkpoint_dir=tmp_path)
    other = TicketConfig(0.5, rounds=1, prune={"scope": "layer"})
    with pytest.raises(ConfigError, match=r"config\.prune\.scope: 'auto' -> 'layer'"):
        find_ticket(_mlp(), train_round, other, checkpoint_dir=tmp_path)
