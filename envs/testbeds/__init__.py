"""The project's own testbeds, registered under the `glasszero/` namespace on import.

Each takes `split="train"|"test"` (e.g. `envs.make("glasszero/CornerGoal-v0", split="test")`) and
`render_mode="rgb_array"` for a small uint8 image. Importing this module twice registers nothing
twice, because `envs.make` imports it on every `glasszero/` id.
"""
import gymnasium as gym

TESTBEDS = {
    "glasszero/Corridor-v0": ("envs.testbeds.corridor:Corridor", 20),
    "glasszero/CornerGoal-v0": ("envs.testbeds.corner_goal:CornerGoal", 40),
    "glasszero/SideEffects-v0": ("envs.testbeds.side_effects:SideEffects", 30),
}

for _env_id, (_entry_point, _max_steps) in TESTBEDS.items():
    if _env_id not in gym.registry:
        gym.register(id=_env_id, entry_point=_entry_point, max_episode_steps=_max_steps)
