"""Helpers every layer shares (nets, planners, envs, agent): importing user code by name and
writing files atomically. It imports nothing from the project."""
