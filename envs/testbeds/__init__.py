"""The project's own testbeds, registered under the `glasszero/` namespace on import.

Each takes `split="train"|"test"` (e.g. `envs.make("glasszero/CornerGoal-v0", split="test")`) and
`render_mode="rgb_array"` for a small uint8 image. The test splits are also registered as ids of
their own (`glasszero/CornerGoalTest-v0`, ...), so that anything that takes only an env id (a
training run, `--env`, the transfer suite's oracles) can reach them. Importing this module twice registers nothing
twice, because `envs.make` imports it on every `glasszero/` id.
"""
import gymnasium as gym

TESTBEDS = {
    "glasszero/Corridor-v0": ("envs.testbeds.corridor:Corridor", 20),
    "glasszero/CornerGoal-v0": ("envs.testbeds.corner_goal:CornerGoal", 40),
    "glasszero/SideEffects-v0": ("envs.testbeds.side_effects:SideEffects", 30),
}

TEST_SPLITS = {f"{env_id[:-3]}Test-v0": env_id for env_id in TESTBEDS}  # test-split id -> testbed id

for _env_id, (_entry_point, _max_steps) in TESTBEDS.items():
    if _env_id not in gym.registry:
        gym.register(id=_env_id, entry_point=_entry_point, max_episode_steps=_max_steps)
for _test_id, _env_id in TEST_SPLITS.items():
    if _test_id not in gym.registry:
        gym.register(id=_test_id, entry_point=TESTBEDS[_env_id][0], max_episode_steps=TESTBEDS[_env_id][1],
                     kwargs={"split": "test"})
