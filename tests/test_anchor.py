"""Predicted observations anchored at the real root observation (planners/anchor.py)."""
import argparse

import numpy as np
import pytest
import torch

from agent.cli.objective_flags import add_objective_arguments, objective_from_args
from planners.objectives import ObservationValue, ObservedGoalDistance, Penalized, objective_from_spec
from tests.test_objective_swap import load_fixture, prefer_right


def seen(obs):
    """Records the predicted observations the objective reads."""
    seen.last = obs.detach().clone()
    return obs[:, 0]


def roots():
    obs = np.zeros((3, 8), np.float32)
    for b, cell in enumerate((1, 3, 5)):
        obs[b, 0], obs[b, 1 + cell] = cell / 3.0 - 1.0, 1.0
    return obs


def test_the_root_reads_as_the_real_observation_and_deeper_states_shift_by_the_same_offset():
    agent = load_fixture("corridor")
    model, obs = agent.model, roots()
    with torch.no_grad():
        root = model.initial_inference(obs)
        child = model.recurrent_inference(root.latent, torch.ones(3, dtype=torch.long))
        decoded_root, decoded_child = model.decode(root.latent), model.decode(child.latent)
    anchored, plain = ObservationValue(seen), ObservationValue(seen, anchor=False)
    for objective in (anchored, plain):
        objective.observe(obs)
    anchored.leaf_value(model, root)
    np.testing.assert_allclose(seen.last.numpy(), obs, atol=1e-6)  # the model's error at the root is gone
    anchored.leaf_value(model, child)
    offset = torch.as_tensor(obs) - decoded_root
    np.testing.assert_allclose(seen.last.numpy(), (decoded_child + offset).numpy(), atol=1e-6)
    plain.leaf_value(model, child)
    np.testing.assert_allclose(seen.last.numpy(), decoded_child.numpy(), atol=1e-6)
    # A batch that is not the roots' (the one-time validation) is read as decoded.
    with torch.no_grad():
        other = model.initial_inference(obs[:2])
    anchored.leaf_value(model, other)
    np.testing.assert_allclose(seen.last.numpy(), model.decode(other.latent).detach().numpy(), atol=1e-6)


def test_anchor_is_in_the_spec_and_off_survives_a_round_trip():
    for make in (lambda a: ObservationValue(prefer_right, anchor=a),
                 lambda a: Penalized(ObservationValue(prefer_right, anchor=a), prefer_right, 1.0, anchor=a),
                 lambda a: ObservedGoalDistance(anchor=a)):
        for on in (True, False):
            spec = make(on).to_spec()
            assert spec["anchor"] is on
            assert objective_from_spec(spec).to_spec() == spec
    old = {k: v for k, v in ObservationValue(prefer_right).to_spec().items() if k != "anchor"}
    assert objective_from_spec(old).anchor.on  # a spec written before the key: the default


def test_no_anchor_flag():
    p = argparse.ArgumentParser()
    add_objective_arguments(p)
    value = "tests.test_objective_swap:prefer_right"
    assert not objective_from_args(p.parse_args(["--value", value, "--no-anchor"]), 0.9).anchor.on
    assert objective_from_args(p.parse_args(["--value", value]), 0.9).anchor.on
    with pytest.raises(ValueError, match="--no-anchor goes with --value"):
        objective_from_args(p.parse_args(["--no-anchor"]), 0.9)


def test_integer_observations_are_read_as_decoded():
    """Grid codes and pixels are categories: no offset is added to them."""
    agent = load_fixture("corridor")
    obj = ObservationValue(seen)
    obj.observe(roots().astype(np.uint8))
    with torch.no_grad():
        out = agent.model.initial_inference(roots())
    obj.leaf_value(agent.model, out)
    np.testing.assert_allclose(seen.last.numpy(), agent.model.decode(out.latent).detach().numpy(), atol=1e-6)


def test_an_objective_built_without_a_discount_keeps_taking_the_agents_through_its_spec():
    spec = ObservationValue(prefer_right).to_spec()
    assert spec["discount"] is None
    assert objective_from_spec(spec).discount_given is False
    assert objective_from_spec(spec, discount=0.9).discount == 0.9
    assert ObservationValue(prefer_right, discount=0.5).to_spec()["discount"] == 0.5
