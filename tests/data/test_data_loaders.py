import pytest
import torch
from torch.utils.data import TensorDataset

from prunekit.data import make_loader, take_first
from prunekit.errors import ConfigError


def numbered(n: int) -> TensorDataset:
    """Samples whose input is their own index, so batches show the order."""
    return TensorDataset(torch.arange(n).float().unsqueeze(1), torch.arange(n))


def order(loader: torch.utils.data.DataLoader) -> list[int]:
    return [i for _, y in loader for i in y.tolist()]


def test_limit_takes_the_first_samples_in_batches() -> None:
    loader = make_loader(numbered(10), batch_size=2, limit=5)
    assert [y.tolist() for _, y in loader] == [[0, 1], [2, 3], [4]]


def test_limit_larger_than_the_data_set_keeps_everything() -> None:
    assert order(make_loader(numbered(3), batch_size=2, limit=100)) == [0, 1, 2]


def test_shuffle_is_fixed_by_seed_and_differs_between_seeds() -> None:
    first = order(make_loader(numbered(50), 8, shuffle=True, seed=3))
    again = order(make_loader(numbered(50), 8, shuffle=True, seed=3))
    other = order(make_loader(numbered(50), 8, shuffle=True, seed=4))
    assert first == again and first != other
    assert sorted(first) == list(range(50))


def test_each_pass_reshuffles_without_touching_the_global_rng() -> None:
    loader = make_loader(numbered(50), 8, shuffle=True, seed=0)
    state = torch.get_rng_state()
    assert order(loader) != order(loader)
    assert torch.equal(torch.get_rng_state(), state)


def test_drop_last_drops_the_short_batch() -> None:
    loader = make_loader(numbered(5), batch_size=2, drop_last=True)
    assert [len(y) for _, y in loader] == [2, 2]


def test_take_first_works_for_any_sized_data_set() -> None:
    pairs = [(torch.tensor([float(i)]), i) for i in range(6)]
    subset = take_first(pairs, 4)  # type: ignore[arg-type]
    assert [subset[i][1] for i in range(len(subset))] == [0, 1, 2, 3]  # type: ignore[arg-type]


def test_tensor_dataset_limit_is_a_view() -> None:
    dataset = numbered(10)
    limited = take_first(dataset, 4)
    assert isinstance(limited, TensorDataset)
    assert limited.tensors[0].data_ptr() == dataset.tensors[0].data_ptr()


@pytest.mark.parametrize(("batch_size", "limit"), [(0, None), (2, 0), (True, None), (2, 1.5)])
def test_bad_sizes_are_refused(batch_size: int, limit: int | None) -> None:
    with pytest.raises(ConfigError):
        make_loader(numbered(4), batch_size, limit=limit)
