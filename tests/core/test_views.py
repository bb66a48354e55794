import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from prunekit.core.views import AxisView, BlockView, ElementView, MatrixLayout, view_from_dict


def test_axis_view_reduces_rows_and_columns_by_hand() -> None:
    t = torch.arange(6.0).reshape(2, 3)
    assert AxisView((2, 3), 0).reduce(t).tolist() == [3.0, 12.0]
    assert AxisView((2, 3), 1).reduce(t).tolist() == [3.0, 5.0, 7.0]
    assert AxisView((2, 3), 1).reduce(t, "max").tolist() == [3.0, 4.0, 5.0]
    assert AxisView((2, 3), 0).reduce(t, "mean").tolist() == [1.0, 4.0]


def test_axis_view_offset_and_repeat_cover_a_slice() -> None:
    t = torch.arange(8.0).reshape(2, 4)
    # flatten-style: unit i covers columns 2i, 2i+1
    assert AxisView((2, 4), 1, repeat=2).reduce(t).tolist() == [10.0, 18.0]
    # concat-style: units are columns 1..2 only
    view = AxisView((2, 4), 1, units=2, offset=1)
    assert view.reduce(t).tolist() == [6.0, 8.0]
    assert view.expand(torch.tensor([0.0, 1.0])).tolist() == [[1, 0, 1, 1], [1, 0, 1, 1]]
    assert AxisView((2, 4), 1, repeat=2).expand(torch.tensor([1.0, 0.0])).tolist() == [
        [1, 1, 0, 0],
        [1, 1, 0, 0],
    ]


def test_matrix_layout_puts_input_channels_innermost() -> None:
    # conv weight [out=1, in=2, k=3]: matrix columns run (k0,i0), (k0,i1), (k1,i0), ...
    w = torch.tensor([[[1.0, 2.0, 3.0], [10.0, 20.0, 30.0]]])
    layout = MatrixLayout((1, 2, 3), 0, 1)
    assert layout.to_matrix(w).tolist() == [[1.0, 10.0, 2.0, 20.0, 3.0, 30.0]]
    assert torch.equal(layout.from_matrix(layout.to_matrix(w)), w)


def test_block_view_handles_ragged_edges() -> None:
    view = BlockView((4, 6), (2, 4))
    assert view.grid == (2, 2)
    assert view.counts().tolist() == [8.0, 4.0, 8.0, 4.0]
    t = torch.ones(4, 6)
    assert view.reduce(t, "mean").tolist() == [1.0, 1.0, 1.0, 1.0]
    mask = view.expand(torch.tensor([1.0, 0.0, 0.0, 1.0]))
    assert mask[:2, :4].sum() == 8 and mask[:2, 4:].sum() == 0
    assert mask[2:, :4].sum() == 0 and mask[2:, 4:].sum() == 4


def test_views_round_trip_through_dicts() -> None:
    for view in (
        AxisView((3, 4), 1, repeat=2),
        ElementView((2, 3, 3, 3)),
        BlockView((8, 8), (4, 4)),
    ):
        assert view_from_dict(view.to_dict()) == view


shapes = st.lists(st.integers(1, 5), min_size=2, max_size=4).map(tuple)


@settings(max_examples=40, deadline=None)
@given(shapes, st.data())
def test_element_view_round_trips_any_tensor(shape: tuple[int, ...], data: st.DataObject) -> None:
    in_dim = data.draw(st.integers(1, len(shape) - 1))
    view = ElementView(shape, 0, in_dim)
    t = torch.randn(shape)
    assert view.n_units == t.numel()
    assert torch.equal(view.expand(view.reduce(t)), t)


@settings(max_examples=40, deadline=None)
@given(shapes, st.integers(1, 3), st.integers(1, 3))
def test_block_view_masks_partition_the_tensor(shape: tuple[int, ...], bh: int, bw: int) -> None:
    view = BlockView(shape, (bh, bw))
    # unit i gets value i+1: every element belongs to exactly one unit and counts add up
    labels = view.expand(torch.arange(1.0, view.n_units + 1))
    assert labels.shape == shape and labels.min() >= 1
    assert torch.equal(torch.bincount(labels.long().flatten())[1:].float(), view.counts())
