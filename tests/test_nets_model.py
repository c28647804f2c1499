import copy
import itertools

import numpy as np
import pytest
import torch

from nets import CapacityBudget, ModelOutput, NetConfig, build_model, format_capacity_report
from nets.conv import downsampled_size
from nets.support import scalar_to_support, support_cross_entropy

SMALL_CONV = dict(family="conv", conv_channels=16, conv_blocks=1, projection_hidden=32,
                  projection_dim=32, projection_head_hidden=16)


def cartpole_model(**kw):
    return build_model((4,), 2, NetConfig(**kw), device="cpu")


# ------------------------------------------------------------------ shapes


def test_mlp_shapes_and_root_reward_is_zero():
    model = cartpole_model()
    out = model.initial_inference(np.random.randn(5, 4).astype(np.float32))
    assert isinstance(out, ModelOutput)
    assert out.latent.shape == (5, 64) and model.latent_shape == (64,)
    assert out.policy_logits.shape == (5, 2)
    assert out.value.shape == (5,) and out.value_ensemble.shape == (5, 1)
    assert out.value_logits.shape == (5, 1, 41)
    assert torch.equal(out.reward, torch.zeros(5)) and out.reward_logits is None
    nxt = model.recurrent_inference(out.latent, torch.tensor([0, 1, 0, 1, 1]))
    assert nxt.latent.shape == (5, 64) and nxt.reward.shape == (5,) and nxt.reward_logits.shape == (5, 21)
    assert nxt.reward_state is None


@pytest.mark.parametrize("norm", ["minmax", "layernorm"])
def test_latent_normalization(norm):
    out = cartpole_model(latent_norm=norm).initial_inference(torch.randn(8, 4) * 100)
    if norm == "minmax":
        assert out.latent.min() >= 0 and out.latent.max() <= 1
        assert torch.allclose(out.latent.max(dim=1).values, torch.ones(8))
    else:
        assert torch.allclose(out.latent.mean(dim=1), torch.zeros(8), atol=1e-5)
        assert torch.allclose(out.latent.var(dim=1, unbiased=False), torch.ones(8), atol=1e-3)


def test_latent_norm_defaults():
    # Layer norm for the MLP family (measured in benchmarks/bench_nets.py); the Atari preset keeps
    # EfficientZero's min-max (not measured for conv).
    assert NetConfig().latent_norm == "layernorm" and NetConfig.atari().latent_norm == "minmax"
    with pytest.raises(ValueError, match="latent_norm"):
        NetConfig(latent_norm="batchnorm")


def test_conv_shapes_on_small_images():
    model = build_model((6, 32, 32), 4, NetConfig(**SMALL_CONV), device="cpu")
    obs = torch.randint(0, 256, (3, 6, 32, 32), dtype=torch.uint8)
    out = model.initial_inference(obs)
    assert out.latent.shape == (3, 16, 2, 2) == (3, *model.latent_shape)
    nxt = model.recurrent_inference(out.latent, torch.tensor([0, 3, 2]))
    assert nxt.latent.shape == out.latent.shape
    assert nxt.policy_logits.shape == (3, 4) and nxt.value.shape == (3,)
    assert model.project(nxt.latent, with_grad=True).shape == (3, 32)


def test_conv_atari_shape_downsamples_96_to_6():
    assert downsampled_size(96) == 6
    model = build_model((12, 96, 96), 18, NetConfig.atari(), device="cpu")
    assert model.latent_shape == (64, 6, 6)
    with torch.no_grad():
        out = model.initial_inference(np.zeros((1, 12, 96, 96), dtype=np.uint8))
    assert out.latent.shape == (1, 64, 6, 6) and out.value_logits.shape == (1, 1, 601)


def test_the_image_stem_runs_channels_last_and_computes_what_the_default_layout_does():
    # The layout is a speed choice (oneDNN convolutions on full frames): the function, its
    # gradients and the latent handed on (in the default layout) stay the same.
    torch.manual_seed(0)
    stem = build_model((4, 32, 32), 3, NetConfig(**SMALL_CONV), device="cpu").representation.net[0]
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in stem.parameters() if p.dim() == 4)
    plain = copy.deepcopy(stem).to(memory_format=torch.contiguous_format)
    x = torch.rand(5, 4, 32, 32)
    fast, slow = stem(x), plain.net(x)  # plain.net: the same layers, without the layout switch
    assert fast.is_contiguous() and not plain.net[0].weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
    fast.sum().backward()
    slow.sum().backward()
    for (name, p), q in zip(stem.named_parameters(), plain.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-4, rtol=1e-4, msg=name)


def test_family_auto_follows_observation_rank():
    assert build_model((4,), 2, device="cpu").family == "mlp"
    assert build_model((3, 16, 16), 2, NetConfig(**{**SMALL_CONV, "family": "auto"}), device="cpu").family == "conv"


def test_wrong_observation_shape_is_refused():
    with pytest.raises(ValueError, match=r"\[B, 4\]"):
        cartpole_model().initial_inference(torch.randn(4))


def test_value_ensemble_mean():
    model = cartpole_model(num_value_heads=3)
    out = model.initial_inference(torch.randn(2, 4))
    assert out.value_logits.shape == (2, 3, 41) and out.value_ensemble.shape == (2, 3)
    assert torch.allclose(out.value, out.value_ensemble.mean(dim=1))
    assert out.value_ensemble.std(dim=1).min() > 0  # independent heads actually differ


@pytest.mark.parametrize("family", ["mlp", "conv"])
def test_terminal_head_is_off_by_default_and_counted_in_the_prediction_budget(family):
    def build(**kw):
        if family == "mlp":
            return cartpole_model(**kw), torch.randn(3, 4)
        return build_model((3, 16, 16), 2, NetConfig(**SMALL_CONV, **kw), device="cpu"), torch.rand(3, 3, 16, 16)

    assert NetConfig().terminal_head is False
    plain, obs = build()
    out = plain.initial_inference(obs)
    assert out.terminal is None and out.terminal_logit is None
    model, obs = build(terminal_head=True)
    root = model.initial_inference(obs)
    # A real observation is never declared terminal (the env has not ended it); the logit still
    # comes back for the learner.
    assert root.terminal is None and root.terminal_logit.shape == (3,)
    out = model.recurrent_inference(root.latent, torch.tensor([0, 1, 1]))
    assert out.terminal.dtype == torch.bool and out.terminal.shape == (3,)
    assert out.terminal_logit.shape == (3,) and out.terminal_logit.requires_grad
    assert torch.equal(out.terminal, torch.sigmoid(out.terminal_logit) > 0.5)
    size = {r.network: r.parameters for r in plain.capacity_report()}
    with_head = {r.network: r.parameters for r in model.capacity_report()}
    head = sum(p.numel() for p in model.prediction.terminal.parameters())
    assert with_head["prediction"] == size["prediction"] + head and head > 0
    assert {k: v for k, v in with_head.items() if k != "prediction"} == \
        {k: v for k, v in size.items() if k != "prediction"}
    # The budget refuses a core that the head pushes over its limit.
    core = size["representation"] + size["dynamics"] + size["prediction"]
    limit = CapacityBudget(max_network_params=10**9, max_core_params=core + head // 2, max_projection_params=10**9)
    build(budget=limit)
    with pytest.raises(ValueError, match="max_core_params"):
        build(terminal_head=True, budget=limit)


# ------------------------------------------------------------------ projection and decoder


def test_projection_target_branch_has_no_grad_and_no_head():
    model = cartpole_model()
    latent = model.initial_inference(torch.randn(4, 4)).latent
    online, target = model.project(latent, with_grad=True), model.project(latent, with_grad=False)
    assert online.shape == target.shape == (4, 64)
    assert online.requires_grad and not target.requires_grad
    assert torch.allclose(target, model.projection.projection(latent))


def test_decoder_and_reconstruction_loss():
    model = cartpole_model(use_decoder=True)
    obs = torch.randn(6, 4)
    latent = model.initial_inference(obs).latent
    assert model.decode(latent).shape == (6, 4)
    loss = model.reconstruction_loss(latent, obs.numpy())
    assert loss.shape == (6,) and (loss >= 0).all()
    assert "decoder" in format_capacity_report(model.capacity_report())
    assert cartpole_model().has_decoder  # on by default for vector observations
    with pytest.raises(RuntimeError, match="use_decoder"):
        cartpole_model(use_decoder=False).decode(latent)


# ------------------------------------------------------------------ budget


def test_capacity_report_cartpole_default_is_under_100k():
    rows = cartpole_model().capacity_report()
    assert [r.network for r in rows] == ["representation", "dynamics", "prediction", "projection", "decoder"]
    assert sum(r.parameters for r in rows[:3]) < 100_000
    assert all(r.depth >= 2 and not r.stateful for r in rows)
    table = format_capacity_report(rows)
    assert "core total" in table and "stateful" in table


def test_over_budget_network_is_refused_with_the_key_to_change():
    # Representation (4,480) fits under 10,000; dynamics (13,973) does not.
    with pytest.raises(ValueError, match=r"'dynamics' has 13,973 parameters, over the limit of 10,000.*max_network_params"):
        cartpole_model(budget=CapacityBudget(max_network_params=10_000, max_core_params=10**9))
    with pytest.raises(ValueError, match=r"'representation' has"):
        cartpole_model(hidden=(512, 512))
    with pytest.raises(ValueError, match="max_core_params"):
        cartpole_model(budget=CapacityBudget(max_core_params=10_000))
    with pytest.raises(ValueError, match="'projection'.*max_projection_params"):
        cartpole_model(projection_hidden=1024)


def test_recurrence_is_refused_unless_allowed():
    with pytest.raises(ValueError, match="recurrent.*allow_recurrence"):
        cartpole_model(value_prefix_lstm=True)
    model = cartpole_model(value_prefix_lstm=True, budget=CapacityBudget(allow_recurrence=True))
    dynamics = next(r for r in model.capacity_report() if r.network == "dynamics")
    assert dynamics.stateful


def test_value_prefix_state_is_carried_and_reward_is_per_step():
    model = cartpole_model(value_prefix_lstm=True, budget=CapacityBudget(allow_recurrence=True))
    root = model.initial_inference(torch.randn(3, 4))
    assert root.reward_state.shape == (3, 2 * 64 + 1) and not root.reward_state.any()
    a = torch.tensor([0, 1, 1])
    first = model.recurrent_inference(root.latent, a, root.reward_state)
    assert torch.allclose(first.reward, model.recurrent_inference(root.latent, a).reward)  # None == reset
    second = model.recurrent_inference(first.latent, a, first.reward_state)
    assert second.reward_state.shape == (3, 129)


def test_value_prefix_lstm_learns_per_step_rewards_from_prefix_targets():
    """Trained on value-prefix targets (sums of rewards since the reset, agent/learner.py), the
    LSTM model's per-step rewards, read along an unroll with its state carried, are the rewards."""
    from agent.learner import value_prefix_targets
    torch.manual_seed(0)
    n, unroll, batch = 5, 4, 64
    model = build_model((n,), 2, NetConfig(value_prefix_lstm=True, lstm_hidden=32,
                                           budget=CapacityBudget(allow_recurrence=True)), device="cpu")
    optim = torch.optim.Adam(model.parameters(), lr=3e-3)
    eye = torch.eye(n)

    def rollout(state, actions):
        rewards = []
        for a in actions.T:
            nxt = (state + 2 * a - 1).clamp(0, n - 1)
            rewards.append(((nxt == n - 1) & (state != n - 1)).float() + 0.5 * (a == 0).float())
            state = nxt
        return torch.stack(rewards, 1)

    for _ in range(1000):
        state, actions = torch.randint(0, n, (batch,)), torch.randint(0, 2, (batch, unroll))
        prefix, _ = value_prefix_targets(rollout(state, actions).numpy(), np.ones((batch, unroll), bool), 5)
        out, loss = model.initial_inference(eye[state]), torch.zeros(())
        for k in range(unroll):
            out = model.recurrent_inference(out.latent, actions[:, k], out.reward_state)
            loss = loss + support_cross_entropy(out.reward_logits, scalar_to_support(torch.as_tensor(prefix[:, k]), 10)).mean()
        optim.zero_grad()
        loss.backward()
        optim.step()
    with torch.no_grad():
        state, actions = torch.arange(n).repeat(4), torch.randint(0, 2, (4 * n, unroll))
        rewards = rollout(state, actions)
        out = model.initial_inference(eye[state])
        for k in range(unroll):
            out = model.recurrent_inference(out.latent, actions[:, k], out.reward_state)
            assert (out.reward - rewards[:, k]).abs().max() < 0.25, (k, out.reward, rewards[:, k])


# ------------------------------------------------------------------ training signals


@pytest.mark.parametrize("family", ["mlp", "conv"])
def test_gradient_flows_through_a_k_step_unroll(family):
    if family == "mlp":
        model, obs, actions = cartpole_model(), torch.randn(4, 4), 2
    else:
        model, obs, actions = build_model((3, 16, 16), 3, NetConfig(**SMALL_CONV), device="cpu"), \
            torch.rand(4, 3, 16, 16), 3
    out = model.initial_inference(obs)
    for _ in range(5):
        out = model.recurrent_inference(out.latent, torch.randint(0, actions, (4,)))
    # A loss at the last step only must reach the representation through five dynamics steps.
    (out.value.sum() + out.reward.sum() + out.policy_logits.sum()
     + model.project(out.latent, True).sum()).backward()
    for name in ("representation", "dynamics", "prediction"):
        grads = [p.grad for p in getattr(model, name).parameters()]
        assert all(g is not None for g in grads), name
        assert sum(g.abs().sum() for g in grads) > 0, name


def test_fits_a_known_deterministic_chain():
    """Five states in a line, actions left/right, reward 1 for stepping onto the right end.
    Representation + dynamics must predict next observations (via the decoder) and rewards over a
    3-step unroll."""
    torch.manual_seed(0)
    n, unroll, batch = 5, 3, 64
    model = build_model((n,), 2, NetConfig(use_decoder=True), device="cpu")
    optim = torch.optim.Adam(model.parameters(), lr=3e-3)
    eye = torch.eye(n)

    def step(state, action):
        nxt = (state + 2 * action - 1).clamp(0, n - 1)
        return nxt, ((nxt == n - 1) & (state != n - 1)).float()

    losses = []
    for _ in range(300):
        state = torch.randint(0, n, (batch,))
        out = model.initial_inference(eye[state])
        loss = torch.zeros(())
        for _ in range(unroll):
            action = torch.randint(0, 2, (batch,))
            state, reward = step(state, action)
            out = model.recurrent_inference(out.latent, action)
            loss = loss + model.reconstruction_loss(out.latent, eye[state]).mean() \
                + support_cross_entropy(out.reward_logits, scalar_to_support(reward, 10)).mean()
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(loss.item())
    start, end = np.mean(losses[:10]), np.mean(losses[-10:])
    assert end < 0.2 * start, (start, end)
    # Every start state under every 3-action sequence: the unrolled latents decode to the right
    # state and the predicted rewards are right to within 0.3.
    with torch.no_grad():
        for seq in itertools.product((0, 1), repeat=unroll):
            state = torch.arange(n)
            out = model.initial_inference(eye[state])
            for a in seq:
                action = torch.full((n,), a)
                state, reward = step(state, action)
                out = model.recurrent_inference(out.latent, action)
                assert torch.equal(model.decode(out.latent).argmax(dim=1), state), (seq, "decode")
                assert (out.reward - reward).abs().max() < 0.3, (seq, out.reward - reward)


# ------------------------------------------------------------------ failures and devices


def test_nan_output_raises():
    model = cartpole_model()
    with torch.no_grad():
        model.prediction.value.heads[0][-1].bias.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="NaN"):
        model.initial_inference(torch.randn(2, 4))


def test_device_handling():
    model = build_model((4,), 2, device="auto")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert model.device.type == expected
    out = model.initial_inference(np.zeros((2, 4), dtype=np.float64))  # numpy, float64: converted
    nxt = model.recurrent_inference(out.latent, np.array([0, 1]))  # numpy actions accepted
    for t in (out.latent, out.value, out.reward, nxt.latent, nxt.reward, nxt.policy_logits):
        assert t.device.type == expected
    assert nxt.latent.dtype == torch.float32


def test_config_round_trips_through_a_dict():
    config = NetConfig(hidden=(32, 32), budget=CapacityBudget(max_core_params=50_000))
    again = NetConfig(**config.to_dict())
    assert again == config and isinstance(again.budget, CapacityBudget)


def test_obs_scale_reads_and_reconstructs_each_entry_in_its_bounds_and_decodes_in_the_envs_units():
    low, high = np.array([-1.2, -0.07], np.float32), np.array([0.6, 0.07], np.float32)
    torch.manual_seed(0)
    plain = build_model((2,), 3, NetConfig(), "cpu")
    torch.manual_seed(0)
    scaled = build_model((2,), 3, NetConfig(obs_scale="bounds"), "cpu", obs_bounds=(low, high))
    obs = np.array([[-1.2, -0.07], [0.6, 0.07], [-0.3, 0.0]], np.float32)
    unit = np.array([[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]], np.float32)
    np.testing.assert_allclose(scaled.obs_scale(torch.as_tensor(obs)).numpy(), unit, atol=1e-6)
    # Same weights (the scale has none): the scaled model reads `obs` as the plain one reads `unit`.
    np.testing.assert_allclose(scaled.initial_inference(obs).latent.detach().numpy(),
                               plain.initial_inference(unit).latent.detach().numpy(), atol=1e-6)
    latent = scaled.initial_inference(obs).latent
    raw = plain.decoder(latent).detach()  # the same decoder weights: its output in scaled units
    np.testing.assert_allclose(scaled.decode(latent).detach().numpy(),
                               (raw * torch.tensor((high - low) / 2) + torch.tensor((high + low) / 2)).numpy(), atol=1e-6)
    expected = ((raw - torch.as_tensor(unit)) ** 2).mean(1)  # the error in scaled units: velocity weighs as position
    np.testing.assert_allclose(scaled.reconstruction_loss(latent, obs).detach().numpy(), expected.numpy(), atol=1e-6)
    state = scaled.state_dict()
    assert "obs_scale.center" in state and sum(p.numel() for p in scaled.parameters()) == \
        sum(p.numel() for p in plain.parameters())


@pytest.mark.parametrize("bounds, shape, family, match", [
    (None, (2,), "mlp", "needs the observation space's bounds"),
    ((np.array([-1.0, -np.inf]), np.array([1.0, np.inf])), (2,), "mlp", r"entries \[1\]"),
    ((0.0, 255.0), (3, 16, 16), "conv", "vector observations")])
def test_obs_scale_refuses_what_it_cannot_scale(bounds, shape, family, match):
    with pytest.raises(ValueError, match=match):
        build_model(shape, 2, NetConfig(obs_scale="bounds", family=family), "cpu", obs_bounds=bounds)
    with pytest.raises(ValueError, match="obs_scale"):
        NetConfig(obs_scale="running")


def test_an_agent_with_obs_scale_reads_its_envs_bounds_and_keeps_them_through_a_save(tmp_path):
    from agent.ez import EZAgent
    from agent.learner import root_values
    agent = EZAgent("MountainCar-v0", {"net.obs_scale": "bounds"}, seed=0, device="cpu")
    np.testing.assert_allclose(agent.model.obs_scale.center.numpy(), [-0.3, 0.0], atol=1e-6)
    obs = np.array([[-0.5, 0.01], [0.3, -0.05]], np.float32)
    value = agent.model.initial_inference(obs).value.detach().numpy()
    with torch.no_grad():  # as the learner calls it
        np.testing.assert_allclose(root_values(agent.model, obs), value, atol=1e-5)  # the compiled path scales too
    agent.save(tmp_path / "model.pt")
    loaded = EZAgent.load(tmp_path / "model.pt", device="cpu")
    np.testing.assert_array_equal(loaded.model.initial_inference(obs).value.detach().numpy(), value)
