"""The compiled recurrent step (nets/compiled.py) against the torch model it copies, and the fused
search (planners/fused.py) against the torch-driven loop: same outputs, same trees."""
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from numba import njit

from common.numba_cache import forget_stale_cache
from nets import compiled, support
from nets.config import NetConfig
from nets.model import NonFiniteObservation, build_model
from planners import fused, kernels
from planners.config import SearchConfig
from planners.objectives import Learned, RewardOnly
from planners.policies import plan
from planners.search import PUCTRoot, search

CONFIGS = {
    "default": NetConfig(),
    "minmax, two hidden layers, terminal head, 3 value heads":
        NetConfig(latent_dim=16, hidden=(32, 24), latent_norm="minmax", terminal_head=True, num_value_heads=3),
    "value and reward bins 0.05 apart": NetConfig(support_step=0.05),
    # 10 x 20 weights are not whole 16-float units: the heads run one by one (Program.heads_rows 0).
    "heads not stacked": NetConfig(latent_dim=10, hidden=(20,), terminal_head=True, num_value_heads=2),
}


def _model(config, obs_dim=5, actions=3, seed=0):
    torch.manual_seed(seed)
    model = build_model((obs_dim,), actions, config, device="cpu").eval()
    with torch.no_grad():  # larger weights than the init's, so rewards, values and terminals vary
        for p in model.parameters():
            p.mul_(2.0)
    return model


def test_packed_columns_agree_with_the_kernels():
    assert (compiled.COL_REWARD, compiled.COL_VALUE, compiled.COL_LOGITS) == \
        (kernels.COL_REWARD, kernels.COL_VALUE, kernels.COL_LOGITS)


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("batch", [1, 9, 2 * compiled.TILE + 3])  # the last: three tiles, one partial
def test_recurrent_step_matches_the_torch_model(name, batch):
    model = _model(CONFIGS[name])
    program = compiled.export(model)
    A = model.num_actions
    rng = np.random.default_rng(batch)
    with torch.no_grad():
        latent = model.initial_inference(torch.as_tensor(rng.normal(size=(batch, 5)), dtype=torch.float32)).latent
        action = torch.as_tensor(rng.integers(0, A, batch))
        ref = model.recurrent_inference(latent, action)
    # A pool of latent rows as the search keeps them: parents read from shuffled rows, children
    # written to others.
    pool = np.full((3 * batch, latent.shape[1]), np.nan, np.float32)
    rows = rng.permutation(3 * batch)
    parent_rows, child_rows = rows[:batch], rows[batch:2 * batch]
    pool[parent_rows] = latent.numpy()
    packed = np.full((batch, 3 + 2 * A), np.nan)
    terminal_column = 2 + A
    assert compiled.recurrent_step(program, pool, parent_rows, action.numpy(), child_rows, packed, terminal_column)
    np.testing.assert_allclose(pool[child_rows], ref.latent.numpy(), atol=1e-5)
    np.testing.assert_array_equal(pool[parent_rows], latent.numpy())  # parents untouched
    assert np.isnan(pool[rows[2 * batch:]]).all()  # nothing else written
    # The kernel decodes the supports in float64, torch in float32, whose h^-1 near 0 loses about
    # 1e-4 to cancellation (root^2 - 1), rounding otherwise on another CPU: both are held to the
    # exact decoding of the model's own logits, torch's within what float32 allows.
    step = model.config.support_step
    exact_reward = support.support_to_scalar(ref.reward_logits.double(), step).numpy()
    exact_value = support.support_to_scalar(ref.value_logits.double(), step).mean(-1).numpy()
    np.testing.assert_allclose(packed[:, compiled.COL_REWARD], exact_reward, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(packed[:, compiled.COL_VALUE], exact_value, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ref.value.numpy(), exact_value, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(packed[:, 2:2 + A], ref.policy_logits.numpy(), rtol=1e-5, atol=1e-5)
    if ref.terminal is not None:
        assert (packed[:, terminal_column] > 0.5).tolist() == ref.terminal.tolist()


def test_the_vectorized_exp_matches_numpy_to_float32_precision():
    @njit
    def exp_all(x):
        out = np.empty(len(x), np.float32)
        bits = np.empty(len(x), np.int32)
        for i in range(len(x)):
            bits[i], out[i] = compiled.exp_nonpositive(x[i])
        return out * bits.view(np.float32)

    x = np.concatenate([[0.0, -1e-30, -0.5, -0.3465736, -87.0, -86.0, -100.0],
                        -np.random.default_rng(0).exponential(10.0, 10_000)]).astype(np.float32)
    got, want = exp_all(x), np.exp(x.astype(np.float64))
    normal = want > 2.0 ** -125
    # float32 rounding of x * log2(e) costs about 6e-8 * |x| of relative error; the terms that
    # weigh in a softmax are those near 0, where it is a few float32 ulps.
    error = np.abs(got[normal] / want[normal] - 1.0)
    assert (error <= 3e-7 + 8e-8 * np.abs(x[normal])).all(), error.max()
    assert (got[~normal] <= 2.0 ** -125).all() and (got >= 0).all()


def test_support_decoding_flags_nan_and_infinite_logits():
    logits = np.zeros((5, 4), np.float32)  # [2S+1, B], S = 2
    logits[4, 0] = 3.0
    logits[1, 1] = np.nan
    logits[2, 2] = np.inf
    logits[0, 3] = -np.inf
    out = np.zeros((4, 2))
    compiled.decode_support(logits, 2, 1.0, out, 1, 1.0)
    assert np.isnan(out[1, 1]) and np.isnan(out[2, 1])
    assert np.isfinite(out[0, 1]) and out[0, 1] > 0 and np.isfinite(out[3, 1]) and out[3, 1] > 0
    assert (out[:, 0] == 0).all()


@pytest.mark.parametrize("name", list(CONFIGS))
def test_initial_step_matches_the_torch_model(name):
    model = _model(CONFIGS[name])
    obs = np.random.default_rng(0).normal(size=(6, 5)).astype(np.float32)
    with torch.no_grad():
        ref = model.initial_inference(obs)
    out = fused.initial_inference(model, compiled.export(model), obs)
    np.testing.assert_allclose(out.latent.numpy(), ref.latent.numpy(), atol=1e-5)
    # torch decodes in float32, the kernel in float64
    np.testing.assert_allclose(out.value.numpy(), ref.value.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out.policy_logits.numpy(), ref.policy_logits.numpy(), rtol=1e-5, atol=1e-5)
    assert out.reward.abs().max() == 0 and out.terminal is None  # a root is never terminal


def test_the_compiled_root_refuses_what_the_model_refuses():
    model = _model(NetConfig())
    bad = np.zeros((3, 5), np.float32)
    bad[1, 2] = np.nan
    with pytest.raises(NonFiniteObservation, match="row"):
        plan(model, Learned(), bad, SearchConfig(num_simulations=3), rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="initial_inference expects"):
        plan(model, Learned(), np.zeros((3, 4), np.float32), SearchConfig(num_simulations=3),
             rng=np.random.default_rng(0))


def _reads_the_model(program, model) -> bool:
    """Whether every exported layer's weight and bias in `program` equal the model's now."""
    linears = compiled._layers(model)[0]
    for (w_off, b_off, n_in, n_out), lin in zip(program.layers, linears):
        if not (np.array_equal(program.weights[w_off:w_off + n_in * n_out], lin.weight.detach().numpy().ravel())
                and np.array_equal(program.weights[b_off:b_off + n_out], lin.bias.detach().numpy())):
            return False
    return len(program.layers) == len(linears)


def _roots_agree(model) -> bool:
    """The compiled root inference (on the current Program) gives the torch model's outputs."""
    obs = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    with torch.no_grad():
        ref = model.initial_inference(obs)
    out = fused.initial_inference(model, compiled.export(model), obs)
    return np.allclose(out.policy_logits.numpy(), ref.policy_logits.numpy(), rtol=1e-5, atol=1e-5)


def test_the_export_follows_every_weight_update():
    model = _model(NetConfig())
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    first = compiled.export(model)
    # Binding the parameters to the Program's buffer changes no value and no Parameter object.
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name])
    assert compiled.export(model) is first and _reads_the_model(first, model)
    # In-place writes reach the same Program with nothing copied: an ordinary and a fused
    # optimizer step (which leaves version counters alone), `.data` and numpy writes, a state dict.
    with torch.no_grad():
        model.prediction.policy[0].bias.add_(1.0)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    torch.optim.AdamW(model.parameters(), lr=0.1, fused=True).step()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    model.dynamics.net[0].weight.data[0, 0] = 123.0
    model.prediction.value.heads[0][0].bias.detach().numpy()[0] = -5.0
    model.load_state_dict(_model(NetConfig(), seed=1).state_dict())
    assert compiled.export(model) is first and _reads_the_model(first, model) and _roots_agree(model)
    # A parameter given new memory (`.data =`), one assigned anew, a state dict loaded by
    # assignment, a non-contiguous parameter: each is bound again, and read from then on.
    model.dynamics.net[0].bias.data = torch.full_like(model.dynamics.net[0].bias, 7.0)
    second = compiled.export(model)
    assert second is not first and _reads_the_model(second, model) and 7.0 in second.weights
    layer = model.prediction.policy[0]
    layer.weight = torch.nn.Parameter(layer.weight.detach() + 1.0)
    third = compiled.export(model)
    assert third is not second and _reads_the_model(third, model) and _roots_agree(model)
    model.load_state_dict(_model(NetConfig(), seed=2).state_dict(), assign=True)
    assert _reads_the_model(compiled.export(model), model) and _roots_agree(model)
    layer = model.dynamics.net[0]
    layer.weight = torch.nn.Parameter(layer.weight.detach().t().contiguous().t())
    assert not layer.weight.is_contiguous()
    fourth = compiled.export(model)
    with torch.no_grad():
        layer.weight.add_(0.5)
    assert compiled.export(model) is fourth and _reads_the_model(fourth, model) and _roots_agree(model)


def test_a_packed_root_is_searched_only_by_the_fused_loop():
    model = _model(NetConfig())
    obs = np.random.default_rng(0).normal(size=(2, 5)).astype(np.float32)
    root = fused.packed_roots(model, compiled.export(model), obs)
    assert isinstance(root, fused.PackedRoot)
    tree = search(model, Learned(), root, 8, root_rule=PUCTRoot())
    assert (tree.num_nodes > 1).all()
    again = search(model, Learned(), root, 8, root_rule=PUCTRoot())  # a root may be searched again
    np.testing.assert_array_equal(again.prior, tree.prior)
    np.testing.assert_array_equal(again.value_sum, tree.value_sum)
    with pytest.raises(ValueError, match="computed by another model"):
        search(_model(NetConfig(), seed=1), Learned(), root, 8, root_rule=PUCTRoot())
    with pytest.raises(ValueError, match="PackedRoot is searched only by the compiled loop"):
        search(model, RewardOnly(2), root, 8, root_rule=PUCTRoot())
    with pytest.raises(ValueError, match="PackedRoot is searched only by the compiled loop"):
        search(model, Learned(), root, 8, root_rule=PUCTRoot(), inference="torch")
    # Observations the model refuses make no PackedRoot: the torch path raises its own error.
    assert fused.packed_roots(model, compiled.export(model), np.full((2, 5), np.nan, np.float32)) is None


def test_the_stacked_and_unstacked_heads_are_both_covered():
    assert compiled.export(_model(CONFIGS["default"])).heads_rows > 0
    assert compiled.export(_model(CONFIGS["heads not stacked"])).heads_rows == 0


def test_a_model_exported_in_inference_mode_still_trains():
    model = _model(NetConfig())
    with torch.inference_mode():
        assert compiled.export(model) is not None
    out = model.initial_inference(np.zeros((2, 5), np.float32))
    out.value.sum().backward()  # refused for an inference tensor's views
    assert all(p.grad is not None for p in model.prediction.value.parameters())


def test_a_root_mask_in_either_memory_order_gives_the_same_search():
    model = _model(NetConfig())
    obs = np.random.default_rng(0).normal(size=(2, 5)).astype(np.float32)
    mask = np.array([[True, False, False], [True, True, False]])
    config = SearchConfig(num_simulations=8)
    first = plan(model, Learned(), obs, config, rng=np.random.default_rng(0), action_mask=mask)
    fortran = plan(model, Learned(), obs, config, rng=np.random.default_rng(0), action_mask=np.asfortranarray(mask))
    np.testing.assert_array_equal(first.tree.legal[:, 0], mask)
    np.testing.assert_array_equal(fortran.tree.legal[:, 0], mask)
    np.testing.assert_array_equal(first.visit_counts, fortran.visit_counts)


def test_a_model_that_is_not_float32_is_not_exported():
    model = _model(NetConfig()).double()
    assert compiled.export(model) is None


# Whole trees compared node for node: the fine-bins model's values (all within a few units, its
# weights scaled up) put pUCT scores within float32 rounding of each other, where the kernel's
# float64 decode and torch's float32 one pick different children; its decode is checked above.
@pytest.mark.parametrize("name", [n for n in CONFIGS if CONFIGS[n].support_step == 1.0])
@pytest.mark.parametrize("algorithm", ["puct", "gumbel"])
def test_fused_search_builds_the_torch_loops_trees(name, algorithm):
    model = _model(CONFIGS[name])
    obs = np.random.default_rng(3).normal(size=(12, 5)).astype(np.float32)
    out = {}
    for inference in ("auto", "torch"):
        config = SearchConfig(num_simulations=40, algorithm=algorithm, inference=inference)
        out[inference] = plan(model, Learned(0.99), obs, config, rng=np.random.default_rng(1))
    fast, slow = out["auto"].tree, out["torch"].tree
    for field in ("children", "visit_count", "parent", "depth", "terminal", "legal", "num_nodes"):
        np.testing.assert_array_equal(getattr(fast, field), getattr(slow, field), err_msg=field)
    for field in ("value_sum", "leaf_value", "edge_reward", "prior"):
        # float32 rounding (BLAS and torch sum in different orders), relative to the field's scale
        a, b = getattr(fast, field), getattr(slow, field)
        assert np.abs(a - b).max() <= 1e-4 * max(1.0, np.abs(b).max()), field
    np.testing.assert_array_equal(out["auto"].action, out["torch"].action)
    if CONFIGS[name].terminal_head:
        assert fast.terminal.any()  # the absorbing-state path was exercised


def test_fused_path_is_taken_only_where_it_computes_the_same_thing():
    model = _model(NetConfig())
    assert fused.fused_program(model, Learned(), "auto") is not None
    assert fused.fused_program(model, Learned(), "torch") is None
    assert fused.fused_program(model, RewardOnly(3), "auto") is None  # other objectives go through torch
    assert compiled.export(_model(NetConfig(value_prefix_lstm=True, budget={"allow_recurrence": True}))) is None
    roomy = {"max_network_params": 10**6, "max_core_params": 10**7}
    conv = build_model((3, 8, 8), 2, NetConfig(conv_channels=4, conv_downsample=False, budget=roomy), device="cpu")
    assert compiled.export(conv) is None


def test_a_diverged_network_fails_loudly_in_the_fused_search():
    model = _model(NetConfig())
    with torch.no_grad():
        model.dynamics.reward.out[0].weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="NaN or inf"):
        plan(model, Learned(), np.zeros((2, 5), np.float32), SearchConfig(num_simulations=5),
             rng=np.random.default_rng(0))


def test_search_inference_setting_is_checked():
    with pytest.raises(ValueError, match="search.inference"):
        SearchConfig(inference="jit")


def test_a_cached_search_is_forgotten_when_a_file_it_calls_is_newer(tmp_path):
    index, callee = tmp_path / "simulate.nbi", tmp_path / "callee.py"
    index.write_text("index")
    callee.write_text("x = 1")
    os.utime(index, (1000, 1000))
    os.utime(callee, (2000, 2000))
    dispatcher = SimpleNamespace(_cache=SimpleNamespace(_cache_file=SimpleNamespace(_index_path=str(index))))
    module = SimpleNamespace(__file__=str(callee))
    os.utime(index, (3000, 3000))
    forget_stale_cache(dispatcher, module)
    assert index.exists()  # newer than what it calls: kept
    os.utime(index, (1000, 1000))
    forget_stale_cache(dispatcher, module)
    assert not index.exists()
    forget_stale_cache(dispatcher, module)  # nothing left to remove: no error
    forget_stale_cache(object(), module)  # caching off: nothing to do
