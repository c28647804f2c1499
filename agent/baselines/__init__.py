"""End-to-end baselines: Stable-Baselines3 PPO / DQN / A2C with rl-baselines3-zoo settings, behind the
same agent protocol (agent/protocol.py) as the planner."""
from agent.baselines.sb3 import A2CBaseline, Baseline, DQNBaseline, PPOBaseline

BASELINES = (PPOBaseline, DQNBaseline, A2CBaseline)

__all__ = ["Baseline", "PPOBaseline", "DQNBaseline", "A2CBaseline", "BASELINES"]
