"""Capacity-limited networks that only predict: representation, dynamics, prediction, projection."""
from nets.output import ModelOutput

__all__ = ["ModelOutput"]
