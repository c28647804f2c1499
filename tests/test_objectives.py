"""Objectives on their own: plug-in checks, torch/numpy calling, descriptions and specs."""
import json

import numpy as np
import pytest
import torch

from nets.output import ModelOutput
from planners.objectives import (Learned, LatentValue, ObjectiveNotRestorable, ObservationReward,
                                 ObservationValue, Penalized, Pessimistic, RewardOnly, Sum, objective_from_spec)
from planners.plugins import PluggedFn, _plugged, validate


class LineModel:
    """A 1-D walker whose latent is its observation [x, y]: action 1 adds 0.5 to x, action 0 subtracts."""

    def __init__(self, decoder=True, heads=1):
        self.decoder, self.heads = decoder, heads

    def _out(self, latent, reward):
        value = latent[:, 0]
        ens = torch.stack([value * (1 + h) for h in range(self.heads)], dim=1)
        return ModelOutput(latent=latent, reward=reward, value=ens.mean(1),
                           policy_logits=torch.zeros(latent.shape[0], 2), value_ensemble=ens)

    def initial_inference(self, obs):
        return self._out(torch.as_tensor(obs, dtype=torch.float32), torch.zeros(len(obs)))

    def recurrent_inference(self, latent, action):
        step = torch.stack([(action.float() - 0.5), torch.zeros_like(action, dtype=torch.float32)], 1)
        nxt = latent + step
        return self._out(nxt, -nxt[:, 0])

    def decode(self, latent):
        return latent if self.decoder else None


# Module-level plug-ins have a 'module:attr' reference, so checkpoints can store them.
def right_end(obs):
    return obs[:, 0]


def numpy_only(obs):
    return np.tanh(np.asarray(obs)[:, 0].astype(np.float64)) if isinstance(obs, np.ndarray) else obs.nope


def far_from_origin(obs):
    return obs[:, 0].abs()


def toward_root_y(obs, root_obs):
    """Root-conditioned: minus the distance from the predicted x to the y the root shows."""
    return -(obs[:, 0] - root_obs[:, 1]).abs()


def numpy_toward_root_y(obs, root_obs):
    return -np.abs(np.asarray(obs)[:, 0] - root_obs[:, 1]) if isinstance(obs, np.ndarray) else obs.nope


def scaled(obs, scale=2.0):  # a second parameter with a default is the function's own option
    return obs[:, 0] * scale


class ZeroValue(torch.nn.Module):
    def forward(self, latent):
        return torch.zeros(latent.shape[0], 1)


ZERO_VALUE = ZeroValue()


def _step(model, objective):
    root = model.initial_inference(torch.tensor([[0.0, 0.0], [1.0, 0.0]]))
    actions = torch.tensor([1, 0])
    child = model.recurrent_inference(root.latent, actions)
    return objective.edge_reward(model, root.latent, actions, child), objective.leaf_value(model, child)


@pytest.mark.parametrize("fn, problem", [
    (lambda obs: obs[:1, 0], "shape (1,)"),
    (lambda obs: obs, "shape (4, 2)"),
    (lambda obs: 1.0, "returned a float"),
    (lambda obs: (obs[:, 0] > 0), "dtype"),
    (lambda obs: np.arange(len(obs)), "dtype"),
    (lambda obs: obs[:, 0] / 0.0, "NaN or inf"),
    (lambda obs: obs[:, 7], "raised IndexError"),
])
def test_broken_plugins_are_refused_at_plug_in_with_the_function_named(fn, problem):
    with pytest.raises(ValueError) as e:
        validate(ObservationValue(fn), LineModel(), (2,))
    assert problem in str(e.value)
    assert "<lambda>" in str(e.value) and "test_objectives" in str(e.value)


def test_a_numpy_only_function_is_detected_and_called_with_numpy_thereafter():
    objective = ObservationValue(numpy_only)
    validate(objective, LineModel(), (2,))
    assert objective.fn.numpy is True
    _, value = _step(LineModel(), objective)
    assert value.dtype == torch.float32
    assert torch.allclose(value, torch.tanh(torch.tensor([0.5, 0.5])))


def test_a_function_that_returns_numpy_from_torch_switches_to_numpy():
    fn = PluggedFn(lambda obs: np.asarray(obs)[:, 0] * 2)
    assert torch.equal(fn(torch.tensor([[1.0, 0.0]])), torch.tensor([2.0]))
    assert fn.numpy is True


def test_objectives_over_observations_need_a_decoder():
    with pytest.raises(ValueError, match="no observation decoder"):
        validate(ObservationValue(right_end), LineModel(decoder=False), (2,))
    with pytest.raises(ValueError, match="no observation decoder"):
        validate(Penalized(Learned(), right_end), LineModel(decoder=False), (2,))
    from nets.config import NetConfig
    from nets.model import build_model
    with pytest.raises(ValueError, match="no observation decoder"):
        validate(ObservationValue(right_end), build_model((4,), 2, NetConfig(use_decoder=False), device="cpu"), (4,))


def test_pessimistic_refuses_a_single_value_head():
    with pytest.raises(ValueError, match="2 or more value heads"):
        validate(Pessimistic(1.0), LineModel(heads=1), (2,))
    validate(Pessimistic(1.0), LineModel(heads=2), (2,))


def test_each_objective_computes_its_edge_reward_and_leaf_value():
    model = LineModel(heads=2)  # children at x = 0.5 and 0.5; learned reward -x, heads x and 2x
    assert [t.tolist() for t in _step(model, Learned())] == [[-0.5, -0.5], [0.75, 0.75]]
    assert [t.tolist() for t in _step(model, RewardOnly(3))] == [[-0.5, -0.5], [0.0, 0.0]]
    assert [t.tolist() for t in _step(model, ObservationValue(right_end))] == [[0.0, 0.0], [0.5, 0.5]]
    assert [t.tolist() for t in _step(model, ObservationValue(right_end, with_reward=True))] == \
        [[-0.5, -0.5], [0.5, 0.5]]
    assert [t.tolist() for t in _step(model, ObservationReward(right_end))] == [[0.5, 0.5], [0.0, 0.0]]
    assert [t.tolist() for t in _step(model, LatentValue(ZERO_VALUE))] == [[0.0, 0.0], [0.0, 0.0]]
    assert [t.tolist() for t in _step(model, Pessimistic(2.0))] == [[-0.5, -0.5], [0.25, 0.25]]
    assert [t.tolist() for t in _step(model, Penalized(Learned(), right_end, 2.0))] == \
        [[-1.5, -1.5], [0.75, 0.75]]
    assert [t.tolist() for t in _step(model, Sum(Learned(), ObservationValue(right_end), 2.0))] == \
        [[-0.5, -0.5], [1.75, 1.75]]  # base + 2 * (edge 0, leaf x)
    assert [t.tolist() for t in _step(model, Sum(RewardOnly(3), Penalized(Learned(), right_end), 0.5))] == \
        [[-1.0, -1.0], [0.375, 0.375]]  # -0.5 + 0.5 * (-0.5 - 0.5); 0 + 0.5 * 0.75


class HalfValue(torch.nn.Module):
    def forward(self, latent):
        return latent[:, 0] * 0.5


def test_terminal_values_are_zero_for_rewards_and_the_leaf_value_for_values_over_states():
    """Objectives of rewards value an absorbing state at 0; values over states keep their value
    there (planners.objectives.Objective); Penalized takes its base's."""
    from agent.aux_values import AuxValue
    from planners.objectives import ObservedGoalDistance
    model = LineModel(heads=2)
    root = model.initial_inference(torch.tensor([[0.0, 0.0], [1.0, 0.0]]))
    child = model.recurrent_inference(root.latent, torch.tensor([1, 0]))  # x = 0.5 and 0.5

    def terminal(objective):
        return objective.terminal_value(model, child).tolist()

    for zero in (Learned(), RewardOnly(2), ObservationReward(right_end), Pessimistic(1.0),
                 Penalized(Learned(), right_end), AuxValue("half", HalfValue())):
        assert terminal(zero) == [0.0, 0.0], zero
    for values in (ObservationValue(right_end), LatentValue(HalfValue()), ObservedGoalDistance((0,), (1,)),
                   Penalized(ObservationValue(right_end, with_reward=True), far_from_origin, 2.0)):
        assert terminal(values) == values.leaf_value(model, child).tolist() != [0.0, 0.0], values
    summed = Sum(Learned(), ObservationValue(right_end), 3.0)  # each part's own terminal value
    assert terminal(summed) == (3.0 * ObservationValue(right_end).leaf_value(model, child)).tolist()


def test_validate_checks_the_terminal_value_too():
    class BadTerminal(ObservationValue):
        def terminal_value(self, model, out):
            return out.value[:1]

    with pytest.raises(ValueError, match="invalid terminal_value"):
        validate(BadTerminal(right_end), LineModel(), (2,))


def test_root_conditioned_functions_get_the_root_observations_of_their_trees():
    assert ObservationValue(toward_root_y).fn.with_root
    for one_argument in (right_end, scaled, np.tanh, lambda obs, *rest: obs[:, 0]):
        assert not ObservationValue(one_argument).fn.with_root, one_argument
    assert not LatentValue(ZERO_VALUE).fn.with_root  # latents only
    model = LineModel()
    for fn in (toward_root_y, numpy_toward_root_y):
        objective = ObservationValue(fn)
        validate(objective, model, (2,))  # the dummy batch: its own observations stand in for roots
        assert objective.fn.numpy is (fn is numpy_toward_root_y)
        objective.observe(np.array([[0.0, 0.5], [1.0, -1.0]], np.float32))  # roots show y = 0.5 and -1
        _, value = _step(model, objective)  # children at x = 0.5 and 0.5
        assert value.tolist() == [0.0, -1.5]
        one = model.initial_inference(torch.tensor([[2.0, 0.0]]))  # another batch size: itself as root
        assert objective.leaf_value(model, one).tolist() == [-2.0]
    penalized = Penalized(ObservationValue(right_end), toward_root_y, 1.0)
    penalized.observe(torch.tensor([[0.0, 0.5], [1.0, 0.5]]))  # tensors are accepted too
    edge, _ = _step(model, penalized)
    assert edge.tolist() == [0.0, 0.0]
    reward = ObservationReward(toward_root_y)
    reward.observe(np.array([[0.0, 0.5], [1.0, 0.0]], np.float32))
    assert _step(model, reward)[0].tolist() == [0.0, -0.5]
    assert "real root observation" in ObservationValue(toward_root_y).describe()
    assert "real root observation" not in ObservationValue(right_end).describe()
    assert "root observation" in reward.describe() and "root observation" in penalized.describe()


ROUND_TRIP = [
    Learned(0.99), RewardOnly(5, 0.9), Pessimistic(1.5), ObservationValue(right_end),
    ObservationValue("tests.test_objectives:right_end", with_reward=True), ObservationReward(right_end, 4),
    LatentValue(ZERO_VALUE), LatentValue("tests.test_objectives:ZeroValue"),
    Penalized(Pessimistic(0.5, 0.95), far_from_origin, 3.0),
    Penalized(ObservationValue(right_end), "tests.test_objectives:far_from_origin", 0.1),
    ObservationValue("tests.test_objectives:toward_root_y"), ObservationReward(toward_root_y, 2),
    Penalized(ObservationValue(toward_root_y), toward_root_y, 0.5),
    Sum(Pessimistic(0.5, 0.95), ObservationValue(right_end), 0.25),
]


@pytest.mark.parametrize("objective", ROUND_TRIP, ids=lambda o: type(o).__name__)
def test_specs_round_trip_through_a_checkpoint(objective, tmp_path):
    if isinstance(objective, LatentValue) and objective.ref is None:
        with pytest.raises(ObjectiveNotRestorable):  # an instance made at run time has no reference
            objective_from_spec(objective.to_spec())
        return
    torch.save({"objective": objective.to_spec()}, tmp_path / "c.pt")
    rebuilt = objective_from_spec(torch.load(tmp_path / "c.pt")["objective"])
    assert rebuilt.describe() == objective.describe()
    assert rebuilt.to_spec() == objective.to_spec()
    assert rebuilt.discount == objective.discount and rebuilt.max_depth == objective.max_depth
    if "toward_root_y" in objective.describe():  # the spec says the function reads the roots
        assert '"root_obs": true' in json.dumps(objective.to_spec())
        assert all(fn.with_root for fn in _plugged(rebuilt))


def test_a_lambda_is_stored_by_description_and_refused_on_load_with_a_clear_error():
    spec = Penalized(Learned(), lambda obs: obs[:, 0] ** 2, 1.0).to_spec()
    assert spec["penalty"]["ref"] is None and "<lambda>" in spec["penalty"]["description"]
    with pytest.raises(ObjectiveNotRestorable, match="set_objective"):
        objective_from_spec(spec)


def test_short_names_and_json_specs():
    assert isinstance(objective_from_spec("learned"), Learned)
    assert objective_from_spec("reward-only:7", discount=0.9).to_spec() == \
        {"name": "reward-only", "horizon": 7, "discount": 0.9}
    assert objective_from_spec("pessimistic:2").k == 2.0
    assert isinstance(objective_from_spec('{"name": "observation-value", "fn": "tests.test_objectives:right_end"}'),
                      ObservationValue)
    for bad in ("reward-only", "learnt", "pessimistic:x", {"horizon": 3}):
        with pytest.raises(ValueError, match="objective"):
            objective_from_spec(bad)


def test_descriptions_compose():
    text = Penalized(Learned(), "tests.test_objectives:far_from_origin", 0.5).describe()
    assert text.startswith("Penalized(tests.test_objectives:far_from_origin, weight=0.5) of [Learned(")


def test_a_sum_with_an_auxiliary_value_head_is_rebuilt_through_the_agents_heads():
    from agent.aux_values import AuxValue
    objective = Sum(Learned(0.99), AuxValue("half", HalfValue(), discount=0.99), 2.0)
    spec = json.loads(json.dumps(objective.to_spec()))
    rebuilt = objective_from_spec(spec, context={"aux_heads": {"half": HalfValue()}})
    assert rebuilt.describe() == objective.describe() and rebuilt.discount == 0.99
    assert [t.tolist() for t in _step(LineModel(), rebuilt)] == [[-0.5, -0.5], [0.5 + 2 * 0.25] * 2]
    with pytest.raises(ValueError, match="no auxiliary value head"):
        objective_from_spec(spec)
    undiscounted = Sum(Learned(), ObservationValue(right_end))  # planned at the agent's discount
    assert objective_from_spec(undiscounted, discount=0.9).discount == 0.9
    with pytest.raises(ValueError, match="Sum needs an Objective as its other"):
        Sum(Learned(), right_end)
