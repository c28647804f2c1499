"""Capacity-limited networks that only predict: representation, dynamics, prediction, projection."""
from nets.budget import CapacityBudget, CapacityRow, format_capacity_report
from nets.config import NetConfig
from nets.model import Model, NonFiniteObservation, available_devices, build_model, resolve_device
from nets.output import ModelOutput
from nets.support import (inverse_scalar_transform, scalar_to_support, scalar_transform,
                          support_cross_entropy, support_to_scalar)

__all__ = ["ModelOutput", "Model", "NonFiniteObservation", "available_devices", "build_model", "resolve_device",
           "NetConfig", "CapacityBudget", "CapacityRow", "format_capacity_report", "scalar_transform", "inverse_scalar_transform",
           "scalar_to_support", "support_to_scalar", "support_cross_entropy"]
