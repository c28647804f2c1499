"""MiniGrid (an optional extra): envs.make's grid observations, the grid networks and decoder, the
presets, and the MiniGrid tasks of the transfer suite on real environments."""
import json
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("minigrid")

import envs  # noqa: E402
from agent.config import preset  # noqa: E402
from agent.studies.transfer_suite import BUDGETS, SUITE  # noqa: E402
from common.imports import load_callable  # noqa: E402
from envs.minigrid import COLOR, GRID_VALUES, OBJECT, STATE, agent_position  # noqa: E402
from envs.tasks import make_task  # noqa: E402
from nets.config import NetConfig  # noqa: E402
from nets.model import build_model  # noqa: E402

DOORKEY = "MiniGrid-DoorKey-5x5-v0"
LAVA_FULL = "glasszero/MiniGrid-LavaGapS5-Full-v0"
EMPTY_FULL = "glasszero/MiniGrid-Empty-5x5-Full-v0"
# MiniGrid's actions
LEFT, RIGHT, FORWARD = 0, 1, 2


def test_constants_agree_with_the_installed_minigrid():
    from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX, STATE_TO_IDX
    assert (OBJECT, COLOR, STATE) == (OBJECT_TO_IDX, COLOR_TO_IDX, STATE_TO_IDX)


def test_partial_view_is_the_standard_7x7x3_image_of_small_integers():
    env = envs.make(DOORKEY, 0)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.shape == (7, 7, 3) and obs.shape == (7, 7, 3) and obs.dtype == np.uint8
    assert env.observation_space.contains(obs)
    for _ in range(20):
        obs, *_ = env.step(env.action_space.sample())
        assert (obs.reshape(-1, 3) < np.array(GRID_VALUES)).all()


def test_full_view_is_minigrids_fully_observable_image_by_wrapper_or_registered_id():
    import gymnasium as gym
    from minigrid.wrappers import FullyObsWrapper
    reference = FullyObsWrapper(gym.make(DOORKEY))
    ours = envs.make(DOORKEY, wrappers=["envs.minigrid:FullView"])
    registered = envs.make("glasszero/MiniGrid-DoorKey-5x5-Full-v0")
    a, b, c = reference.reset(seed=3)[0]["image"], ours.reset(seed=3)[0], registered.reset(seed=3)[0]
    assert ours.observation_space.shape == (5, 5, 3) and np.array_equal(a, b) and np.array_equal(a, c)
    for action in (LEFT, FORWARD, RIGHT, FORWARD):
        a, b = reference.step(action)[0]["image"], ours.step(action)[0]
        assert np.array_equal(a, b)


def test_same_seed_same_episode():
    def rollout(seed):
        env = envs.make(DOORKEY, seed)
        obs, _ = env.reset(seed=seed)
        seen = [obs]
        for _ in range(30):
            seen.append(env.step(env.action_space.sample())[0])
        return np.stack(seen)
    assert np.array_equal(rollout(5), rollout(5))
    assert not np.array_equal(rollout(5), rollout(6))


def test_minigrid_wrappers_after_the_image_are_refused_naming_the_full_view_wrapper():
    with pytest.raises(ValueError, match="envs.minigrid:FullView"):
        envs.make(DOORKEY, wrappers=["minigrid.wrappers:FullyObsWrapper"])
    with pytest.raises(ValueError, match="MiniGrid environments only"):
        envs.make("CartPole-v1", wrappers=["envs.minigrid:FullView"])


def test_minimal_actions_pass_only_the_named_minigrid_actions():
    from minigrid.core.actions import Actions

    from envs.minigrid import ACTION

    assert ACTION == {a.name: a.value for a in Actions}
    env = envs.make("MiniGrid-Empty-5x5-v0", None, wrappers=["envs.minigrid:MinimalActions"])
    assert env.action_space.n == 3
    env.reset(seed=0)
    inner = env.unwrapped
    start, facing = tuple(inner.agent_pos), inner.agent_dir  # (1, 1), facing right
    env.step(2)  # forward
    assert tuple(inner.agent_pos) == (start[0] + 1, start[1]) and inner.agent_dir == facing
    env.step(1)  # turn right
    assert inner.agent_dir == (facing + 1) % 4
    env.step(0)  # turn left
    assert inner.agent_dir == facing
    doorkey = envs.make("MiniGrid-DoorKey-5x5-v0", None, wrappers=[
        'envs.minigrid:MinimalActions(actions=("left", "right", "forward", "pickup", "toggle"))'])
    assert doorkey.action_space.n == 5 and doorkey.unwrapped.actions.toggle == doorkey.action(4)
    for bad in (("left", "jump"), ("left", "left"), ()):
        with pytest.raises(ValueError, match="MinimalActions: actions must be distinct names"):
            envs.make("MiniGrid-Empty-5x5-v0", None, wrappers=[f"envs.minigrid:MinimalActions(actions={bad!r})"])
    with pytest.raises(ValueError, match="wraps MiniGrid environments only"):
        envs.make("CartPole-v1", None, wrappers=["envs.minigrid:MinimalActions"])


def test_a_missing_minigrid_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "minigrid", None)  # import minigrid now raises ImportError
    with pytest.raises(ImportError, match=r'pip install -e "\.\[minigrid\]"'):
        envs.make(DOORKEY)


def test_presets_read_the_grid_one_hot_with_a_grid_decoder():
    for env_id in (DOORKEY, "MiniGrid-LavaGapS5-v0", EMPTY_FULL, "MiniGrid-Empty-8x8-v0"):
        config = preset(env_id)
        assert config.net.grid_values == GRID_VALUES and config.net.family == "mlp"
    assert preset("CartPole-v1").net.grid_values is None
    model = build_model((7, 7, 3), 7, preset(DOORKEY).net, "cpu")
    assert model.has_decoder


def test_every_minigrid_id_learns_with_the_settings_chosen_on_doorkey():
    # The transfer suite trains full-view ids; before, they fell back to the classic-control
    # defaults (a temperature that decays), under which the learned prior collapsed to one action.
    chosen = preset(DOORKEY)
    for env_id in ("MiniGrid-LavaGapS5-v0", EMPTY_FULL, "glasszero/MiniGrid-DoorKey-5x5-Full-v0"):
        config = preset(env_id)
        assert config.temperature == chosen.temperature == [[0.0, 1.0]]
        assert (config.td_steps, config.replay_ratio, config.search.num_simulations) == (10, 0.5, 25)


def test_grid_values_outside_the_setting_are_refused_naming_it():
    model = build_model((7, 7, 3), 7, preset(DOORKEY).net, "cpu")
    obs = np.zeros((1, 7, 7, 3), np.uint8)
    obs[0, 2, 2, 1] = 6  # colors are 0..5
    with pytest.raises(ValueError, match="grid_values"):
        model.initial_inference(obs)
    with pytest.raises(ValueError, match="grid_values"):
        build_model((7, 7, 4), 7, preset(DOORKEY).net, "cpu")


@pytest.mark.parametrize("family", ["mlp", "conv"])
def test_the_grid_decoder_learns_real_grids_and_decodes_them_in_their_own_integers(family):
    torch.manual_seed(0)
    env = envs.make(DOORKEY, 0, wrappers=["envs.minigrid:FullView"])
    obs = [env.reset(seed=0)[0]]
    for _ in range(63):
        o, _, term, trunc, _ = env.step(env.action_space.sample())
        obs.append(env.reset()[0] if term or trunc else o)
    obs = np.stack(obs)
    config = NetConfig(family=family, grid_values=GRID_VALUES, conv_downsample=False, conv_channels=16,
                       budget=preset(DOORKEY).net.budget)
    model = build_model(obs.shape[1:], 7, config, "cpu")
    opt = torch.optim.Adam(model.decoder.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        with torch.no_grad():
            latent = model.initial_inference(obs).latent
        loss = model.reconstruction_loss(latent, obs).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    with torch.no_grad():
        decoded = model.decode(model.initial_inference(obs).latent).numpy()
    assert decoded.shape == obs.shape and np.array_equal(decoded, np.round(decoded))
    assert (decoded == obs).mean() > 0.9  # the walls and the floor, most of the grid, come back


def test_a_minigrid_checkpoint_round_trips_and_eval_accepts_a_value_over_predicted_grids(tmp_path, capsys):
    from agent.cli import main as cli_main
    from agent.ez import EZAgent
    agent = EZAgent(EMPTY_FULL, config={"search.num_simulations": 4, "num_envs": 2}, seed=0, device="cpu")
    path = agent.save(tmp_path / "model.pt")
    loaded = EZAgent.load(path, device="cpu")
    obs = envs.make(EMPTY_FULL, 0).reset(seed=0)[0][None]
    with torch.no_grad():
        a = agent.model.decode(agent.model.initial_inference(obs).latent)
        b = loaded.model.decode(loaded.model.initial_inference(obs).latent)
    assert torch.equal(a, b) and loaded.config.net.grid_values == GRID_VALUES
    argv = ["eval", "--checkpoint", str(path), "--episodes", "1", "--json",
            "--value", "envs.tasks:value_fn(name='minigrid-cell', x=3, y=1)"]
    assert cli_main(argv) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["objective"].startswith("ObservationValue(envs.tasks:value_fn(name='minigrid-cell'")


def _walk(env, actions):
    obs, _ = env.reset(seed=0)
    steps = [obs]
    for a in actions:
        step = env.step(a)
        steps.append(step)
    return obs, steps


def test_reach_cell_task_on_a_real_full_view():
    env = envs.make(EMPTY_FULL, 0, wrappers=["envs.tasks:TaskReward(name='minigrid-cell', x=3, y=1)"])
    obs, _ = env.reset(seed=0)
    task = make_task("minigrid-cell", x=3, y=1)
    assert tuple(agent_position(obs[None])[0]) == (1.0, 1.0)  # Empty-5x5 starts at (1, 1), facing right
    assert task.value(obs[None])[0] == -2.0
    _, r1, t1, _, _ = env.step(FORWARD)
    obs, r2, t2, _, info = env.step(FORWARD)
    assert (r1, t1, r2, t2) == (0.0, False, 1.0, True) and info["task_success"]
    assert task.value(obs[None])[0] == 0.0
    # torch (a predicted grid) gives the same value; a grid without an agent is the farthest
    grid = torch.as_tensor(obs[None]).float()
    assert float(task.value(grid)[0]) == 0.0
    grid[..., 0] = OBJECT["empty"]
    assert float(task.value(grid)[0]) == -10.0


def test_no_lava_task_charges_the_step_onto_lava_and_its_value_reads_the_root_grid():
    env = envs.make(LAVA_FULL, 0, wrappers=["envs.tasks:TaskReward(name='minigrid-no-lava')"])
    root, _ = env.reset(seed=0)
    task = make_task("minigrid-no-lava")
    lava = np.argwhere(root[..., 0] == OBJECT["lava"])
    x, y = agent_position(root[None])[0].astype(int)
    assert [x + 1, y] in lava.tolist() and root[x, y, 2] == 0  # seed 0: lava right ahead, facing right
    assert task.value(root[None], root[None])[0] == 0.0
    obs, reward, terminated, _, info = env.step(FORWARD)
    assert reward == -1.0 and terminated and not info["task_success"]
    assert float(task.value(torch.as_tensor(obs[None]), torch.as_tensor(root[None]))[0]) == -1.0


def test_the_minigrid_suite_entries_build_with_budgets_and_zero_shot_objectives():
    entries = [o for o in SUITE if o.base_env.startswith("glasszero/MiniGrid-")]
    assert {o.split for o in entries} == {"dev", "eval"} and len(entries) >= 4
    for o in entries:
        assert o.base_env in BUDGETS
        env = envs.make(o.env, 0, wrappers=[o.wrapper])
        obs, _ = env.reset(seed=0)
        fn = load_callable(o.zero_shot["fn"])
        assert load_callable(o.reward)(obs[None], np.zeros(1), np.zeros(1), obs[None], np.zeros(1)).shape == (1,)
        assert np.asarray(fn(obs[None], obs[None]) if o.task == "minigrid-no-lava" else fn(obs[None])).shape == (1,)
