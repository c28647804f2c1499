import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nets.support import (inverse_scalar_transform, probs_to_scalar, scalar_to_support, scalar_transform,
                          support_cross_entropy, support_to_scalar)

finite = st.floats(min_value=-1e5, max_value=1e5, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(finite)
def test_inverse_transform_undoes_transform(x):
    t = torch.tensor(x, dtype=torch.float64)
    assert inverse_scalar_transform(scalar_transform(t)).item() == pytest.approx(x, rel=1e-9, abs=1e-9)


def test_transform_known_values():
    x = torch.tensor([-3.0, 0.0, 3.0], dtype=torch.float64)
    expected = [-(math.sqrt(4) - 1) - 0.003, 0.0, (math.sqrt(4) - 1) + 0.003]
    assert scalar_transform(x).tolist() == pytest.approx(expected)


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=-400, max_value=400, allow_nan=False), st.sampled_from([5, 10, 20, 300]))
def test_two_hot_round_trips_within_the_support(x, support_size):
    t = torch.tensor([x], dtype=torch.float64)
    if abs(scalar_transform(t).item()) > support_size:
        return  # outside the support: clamped, covered below
    probs = scalar_to_support(t, support_size)
    assert probs.shape == (1, 2 * support_size + 1)
    assert probs.sum().item() == pytest.approx(1.0)
    assert (probs > 0).sum() <= 2
    assert probs_to_scalar(probs).item() == pytest.approx(x, rel=1e-6, abs=1e-6)
    # The logits of a two-hot (log probs) decode back too: what a perfectly trained head outputs.
    assert support_to_scalar(probs.log()).item() == pytest.approx(x, rel=1e-6, abs=1e-6)


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=-2.5, max_value=2.5, allow_nan=False), st.sampled_from([0.05, 0.25, 1.0]))  # h(2.5) < 20 * 0.05
def test_finer_bins_round_trip_and_resolve_small_values(x, step):
    t = torch.tensor([x], dtype=torch.float64)
    probs = scalar_to_support(t, 20, step)
    assert probs.sum().item() == pytest.approx(1.0) and (probs > 0).sum() <= 2
    assert probs_to_scalar(probs, step).item() == pytest.approx(x, rel=1e-6, abs=1e-6)
    assert support_to_scalar(probs.log(), step).item() == pytest.approx(x, rel=1e-6, abs=1e-6)


def test_finer_bins_shrink_the_value_error_of_a_slightly_wrong_mixture():
    # The same 1 % of probability moved to the next bin up: how far the decoded value of 1.0 moves.
    def error(step):
        probs = scalar_to_support(torch.tensor([1.0], dtype=torch.float64), 20, step)
        low = int(probs.argmax())
        probs[0, low] -= 0.01
        probs[0, low + 1] += 0.01
        return probs_to_scalar(probs, step).item() - 1.0
    assert error(1.0) > 0.02 and error(0.05) < 0.002


def test_two_hot_clamps_outside_the_support():
    probs = scalar_to_support(torch.tensor([1e6, -1e6]), 10)
    assert probs[0, -1] == 1 and probs[1, 0] == 1
    assert torch.allclose(probs.sum(-1), torch.ones(2))


def test_two_hot_keeps_batch_shape_and_float32():
    x = torch.randn(4, 5) * 10
    probs = scalar_to_support(x, 10)
    assert probs.shape == (4, 5, 21) and probs.dtype == torch.float32
    assert torch.allclose(probs_to_scalar(probs), x, rtol=1e-4, atol=1e-4)


def test_cross_entropy_is_minimized_by_the_target():
    target = scalar_to_support(torch.tensor([2.5, -7.0]), 10)
    exact = support_cross_entropy(target.clamp_min(1e-12).log(), target)
    uniform = support_cross_entropy(torch.zeros(2, 21), target)
    assert exact.shape == (2,)
    assert (exact < uniform).all()


def test_even_bin_count_is_refused():
    with pytest.raises(ValueError, match="odd"):
        support_to_scalar(torch.zeros(3, 20))
