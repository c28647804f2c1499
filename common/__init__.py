"""Helpers every layer shares (nets, planners, envs, agent): importing user code by name, writing
files atomically and refusing out-of-range flags. It imports nothing from the project."""
