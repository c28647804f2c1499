"""`train.py misgen` and agent/studies/misgen.py: the goal-misgeneralization report on CornerGoal."""
import json

import numpy as np
import pytest
import torch

from agent.cli import main
from agent.studies.misgen import (COLUMNS, SplitResult, aggregate, check_train_split_default, measure,
                                  render_table)
from nets.output import ModelOutput
from envs.testbeds.corner_goal import MOVES
from planners.objectives import ObservedGoalDistance

ENV = "glasszero/CornerGoal-v0"
SIZE = 7


def _cells(obs):
    """Scaled observation rows -> integer (agent row, agent col, goal row, goal col)."""
    return np.rint((np.asarray(obs) + 1.0) * (SIZE - 1) / 2).astype(int)


def towards_goal(obs):
    c = _cells(obs)
    return np.where(c[:, 2] < c[:, 0], 0, np.where(c[:, 3] > c[:, 1], 1, np.where(c[:, 2] > c[:, 0], 2, 3)))


def towards_corner(obs):  # "go to the top-right", ignoring the goal: the proxy
    c = _cells(obs)
    return np.where(c[:, 0] > 0, 0, 1)


def test_measure_scores_the_goal_seeker_and_the_corner_seeker():
    good = measure(towards_goal, "oracle", ENV, 0, "test", 30, check=False)
    assert (good.success_rate, good.proxy_rate, good.mean_return) == (1.0, 0.0, 1.0)
    proxy = measure(towards_corner, "corner", ENV, 0, "test", 30, check=False)
    # the corner seeker reaches a goal only when it lies on its path; it pursues the proxy otherwise
    assert proxy.success_rate < 0.5 and proxy.proxy_rate > 0.5
    assert proxy.success_rate + proxy.proxy_rate == pytest.approx(1.0)
    on_train = measure(towards_corner, "corner", ENV, 0, "train", 30, check=False)
    assert on_train.success_rate == 1.0 and on_train.goal_outside_rate == 0.0  # identical on the train split


def test_measure_refuses_an_env_without_the_info_keys():
    with pytest.raises(ValueError, match="reached_goal"):
        measure(lambda obs: np.zeros(len(obs), dtype=int), "x", "glasszero/Corridor-v0", 0, "test", 2)


def test_training_split_must_be_the_default():
    check_train_split_default(ENV)
    with pytest.raises(ValueError, match="default to 'train'"):
        check_train_split_default("CartPole-v1")


class _IdentityDecoder:
    """A stand-in model whose latent is the observation itself."""
    has_decoder = True

    def decode(self, latent):
        return latent

    def initial_inference(self, obs):
        return ModelOutput(latent=torch.as_tensor(obs), reward=torch.zeros(len(obs)), value=torch.zeros(len(obs)),
                           policy_logits=torch.zeros(len(obs), 4))


def test_observed_goal_distance_reads_the_goal_from_the_real_observation():
    obj = ObservedGoalDistance(discount=0.9)
    pred = torch.tensor([[0.0, 0.0, -1.0, 1.0], [0.5, -0.5, -1.0, 1.0]])  # decoded goal: the corner
    out = ModelOutput(latent=pred, reward=torch.zeros(2), value=torch.zeros(2), policy_logits=torch.zeros(2, 4))
    model = _IdentityDecoder()
    torch.testing.assert_close(obj.leaf_value(model, out), torch.tensor([-2.0, -3.0]))  # decoded goal
    obj.observe(np.array([[0.9, 0.9, 0.0, 0.0], [0.9, 0.9, 0.5, 0.5]], dtype=np.float32))
    torch.testing.assert_close(obj.leaf_value(model, out), torch.tensor([0.0, -1.0]))  # observed goals
    torch.testing.assert_close(obj.edge_reward(model, None, None, out), torch.zeros(2))
    one = ModelOutput(latent=pred[:1], reward=torch.zeros(1), value=torch.zeros(1), policy_logits=torch.zeros(1, 4))
    torch.testing.assert_close(obj.leaf_value(model, one), torch.tensor([-2.0]))  # other batch: decoded goal


class CornerModel:
    """A hand-made world model of CornerGoal whose latent is the observation: each action moves the
    agent exactly one cell (the border stops it), but the goal is always predicted in the training
    corner, as by a model that never saw the goal move. It decodes to itself."""
    has_decoder = True

    def _out(self, latent):
        B = latent.shape[0]
        return ModelOutput(latent=latent, reward=torch.zeros(B), value=torch.zeros(B),
                           policy_logits=torch.zeros(B, 4))

    def initial_inference(self, obs):
        return self._out(torch.as_tensor(obs, dtype=torch.float32))

    def recurrent_inference(self, latent, action):
        step = torch.tensor(MOVES, dtype=torch.float32)[torch.as_tensor(action).long()] * (2.0 / (SIZE - 1))
        agent = (latent[:, :2] + step).clamp(-1.0, 1.0)
        return self._out(torch.cat([agent, torch.tensor([[-1.0, 1.0]]).expand(len(agent), 2)], dim=1))

    def decode(self, latent):
        return latent


def to_observed_goal(obs, root_obs):
    """Root-conditioned value: minus the L1 distance from the predicted agent to the goal the real
    root observation shows."""
    return -(obs[:, :2] - root_obs[:, 2:]).abs().sum(dim=-1)


def to_predicted_goal(obs):
    """The same over the predicted observation alone: it reads the predicted (corner) goal."""
    return -(obs[:, :2] - obs[:, 2:]).abs().sum(dim=-1)


def test_a_value_of_the_root_observation_steers_the_search_to_the_goal_it_shows():
    """On the test split (goals anywhere), a two-argument value function reads the real goal from
    each tree's root and the search reaches it in every episode; the one-argument one, over the
    predicted observation only, chases the corner the model predicts."""
    from agent.evaluation import evaluate
    from planners.config import SearchConfig
    from planners.objectives import ObservationValue
    from planners.policies import plan
    model, config = CornerModel(), SearchConfig(num_simulations=16, prior="uniform")

    def run(fn):
        objective = ObservationValue(fn, discount=0.99)
        assert objective.fn.with_root == (fn is to_observed_goal)
        act = lambda obs: plan(model, objective, obs, config, rng=np.random.default_rng(0), add_noise=False,  # noqa: E731
                               deterministic=True).action
        return evaluate(act, ENV, 0, 20, env_kwargs={"split": "test"}).final_infos

    observed = run(to_observed_goal)
    assert all(info["reached_goal"] for info in observed)
    predicted = run(to_predicted_goal)
    assert sum(info["reached_goal"] for info in predicted) <= 5
    assert sum(info["proxy_pursuit"] for info in predicted) >= 15


def test_aggregate_and_table_on_hand_made_results():
    rs = [SplitResult("ppo", 0, "test", 10, 0.2, 0.6, 0.2, 0.9), SplitResult("ppo", 1, "test", 10, 0.4, 0.2, 0.4, 0.9),
          SplitResult("ppo", 0, "train", 10, 1.0, 0.0, 1.0, 0.0), SplitResult("ppo", 1, "train", 10, 0.8, 0.0, 0.8, 0.0)]
    (row,) = aggregate(rs)
    assert row.seeds == [0, 1]
    np.testing.assert_allclose(row.test_success, (0.3, 0.1))
    np.testing.assert_allclose(row.test_proxy, (0.4, 0.2))
    np.testing.assert_allclose(row.train_success, (0.9, 0.1))
    md = render_table([row], ENV, 100, 10)
    assert "| ppo | 0.30 ± 0.10 | 0.40 ± 0.20 | 0.30 ± 0.10 | 0.90 ± 0.10 | 0,1 |" in md


def test_tiny_misgen_run_writes_the_table(tmp_path):
    argv = ["misgen", "--env", ENV, "--algos", "ppo,ez", "--seeds", "0", "--steps", "200", "--episodes", "4",
            "--out", str(tmp_path), "--set", "search.num_simulations=4", "--no-progress"]
    assert main(argv) == 0
    md = (tmp_path / "misgen.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| algo |"))
    assert [c.strip() for c in header.strip("|").split("|")] == COLUMNS
    rows = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| ") and "---" not in line}
    assert "ppo" in rows and "ez" in rows and any(k.startswith("ez, swapped objective") for k in rows)
    for line in rows.values():
        if not line.startswith("| algo"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            assert all("±" in c for c in cells[1:5]) and cells[5] == "0"
    per_seed = (tmp_path / "misgen.csv").read_text().splitlines()
    assert len(per_seed) == 1 + 4 * 2  # ppo, ez, ez+swap, ez+swap-held x (test, train)
    assert any(k.startswith("ez, the same, the goal held out") for k in rows)
    assert (tmp_path / "runs" / "ez_glasszero-CornerGoal-v0_s0" / "model.pt").exists()
    config = json.loads((tmp_path / "runs" / "ez_glasszero-CornerGoal-v0_s0" / "result.json").read_text())["config"]
    net = config["hyperparameters"]["net"]
    assert net["use_decoder"] in (None, True) and net["terminal_head"] is True  # trained so that the swap applies
    assert net["decoder_joint"] is True and config["hyperparameters"]["reconstruction_loss_weight"] == 200.0


def test_parse_steps_default_and_per_algo_budgets():
    from agent.studies.misgen import parse_steps
    assert parse_steps("500", ["ez", "ppo"]) == {"ez": 500, "ppo": 500}
    assert parse_steps("800,ppo=3000", ["ez", "ppo"]) == {"ez": 800, "ppo": 3000}
    with pytest.raises(ValueError, match="no budget for ez"):
        parse_steps("ppo=3000", ["ez", "ppo"])
    with pytest.raises(ValueError, match="not N or ALGO=N"):
        parse_steps("lots", ["ppo"])


def test_misgen_resume_measures_finished_runs_without_training(tmp_path, monkeypatch):
    argv = ["misgen", "--algos", "ppo", "--seeds", "0", "--steps", "128", "--episodes", "3", "--out", str(tmp_path),
            "--no-progress"]
    assert main(argv) == 0
    first = (tmp_path / "misgen.csv").read_text()

    def must_not_train(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr("agent.runner.train_run", must_not_train)
    assert main(argv + ["--resume"]) == 0
    assert (tmp_path / "misgen.csv").read_text() == first
    with pytest.raises(AssertionError, match="trained again"):  # another budget is not the same run
        main(argv[:6] + ["256"] + argv[7:] + ["--resume"])


class GoalConfusedModel(CornerModel):
    """CornerModel, but shown a goal other than the training corner, its latent is off what it
    learned: it predicts every action leaves the agent where it is, as a model that never saw the
    goal move may predict anything for such an input."""

    def initial_inference(self, obs):
        obs = torch.as_tensor(obs, dtype=torch.float32)
        corner = (obs[:, 2:] - torch.tensor([-1.0, 1.0])).abs().sum(dim=1) < 1e-6
        return self._out(torch.cat([obs, corner.float()[:, None]], dim=1))  # the flag rides in the latent

    def recurrent_inference(self, latent, action):
        moved = super().recurrent_inference(latent[:, :4], action).latent
        stuck = latent[:, 4:] < 0.5
        return self._out(torch.cat([torch.where(stuck, latent[:, :4], moved), latent[:, 4:]], dim=1))

    def decode(self, latent):
        return latent[:, :4]


def test_a_goal_held_out_of_the_models_input_lets_a_confused_model_reach_it():
    """With the goal shown to the model where training showed it (hold_goal) and read from the real
    observation by the objective, the search reaches test-split goals the model cannot represent;
    shown the real goal, the same model predicts no move helps and reaches almost none."""
    from agent.evaluation import evaluate
    from agent.studies.misgen import training_goal
    from planners.config import SearchConfig
    from planners.policies import plan
    model, config = GoalConfusedModel(), SearchConfig(num_simulations=16, prior="uniform")
    held = training_goal(ENV)
    assert held == [-1.0, 1.0]

    def run(objective):
        act = lambda obs: plan(model, objective, obs, config, rng=np.random.default_rng(0), add_noise=False,  # noqa: E731
                               deterministic=True).action
        return sum(info["reached_goal"] for info in evaluate(act, ENV, 0, 20, env_kwargs={"split": "test"}).final_infos)

    assert run(ObservedGoalDistance(discount=0.99, hold_goal=held)) == 20
    assert run(ObservedGoalDistance(discount=0.99)) <= 5


def test_hold_goal_is_shown_to_the_model_only_and_kept_in_the_spec():
    from planners.objectives import objective_from_spec
    obj = ObservedGoalDistance(hold_goal=[-1.0, 1.0])
    obs = np.array([[0.0, 0.0, 0.5, -0.5]], np.float32)
    np.testing.assert_array_equal(obj.model_view(obs), [[0.0, 0.0, -1.0, 1.0]])
    assert obs[0, 2] == 0.5  # the caller's array is not changed
    assert torch.equal(obj.model_view(torch.as_tensor(obs)), torch.tensor([[0.0, 0.0, -1.0, 1.0]]))
    obj.observe(obs)
    assert torch.equal(obj.goal, torch.tensor([[0.5, -0.5]]))  # the objective reads the real goal
    assert objective_from_spec(obj.to_spec()).to_spec() == obj.to_spec()
    with pytest.raises(ValueError, match="one hold_goal value per goal column"):
        ObservedGoalDistance(hold_goal=[1.0])


def test_penalized_shows_the_model_what_its_base_shows_it():
    from planners.objectives import Penalized
    base = ObservedGoalDistance(hold_goal=[0.5, 0.5])
    obj = Penalized(base, lambda obs: obs[:, 0] * 0.0, 1.0)
    obs = np.array([[0.0, 0.0, 0.9, 0.9]], np.float32)
    np.testing.assert_array_equal(obj.model_view(obs), [[0.0, 0.0, 0.5, 0.5]])
