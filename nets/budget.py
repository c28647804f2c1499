"""Capacity budget: a hard ceiling on what the learned parts may be, checked at construction.

The networks are meant to *predict* (next latent, reward, value, prior) while the tree search does
the choosing. Keeping each network small, and refusing recurrence across time steps, keeps them
from becoming optimizers in their own right. The budget is enforced when the model is built, so
an over-sized configuration fails before any training time is spent.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, List, Mapping

from torch import nn

# The three networks the search runs; together they are the "core" the total limit applies to.
CORE_NETWORKS = ("representation", "dynamics", "prediction")
# The self-supervised consistency branch is used only by the learner, never by the search.
PROJECTION_NETWORK = "projection"


@dataclass
class CapacityBudget:
    """Parameter limits; the defaults fit CartPole-sized MLPs (core total under 100k)."""

    max_network_params: int = 50_000  # any single network (representation, dynamics, ...)
    max_core_params: int = 100_000  # representation + dynamics + prediction together
    max_projection_params: int = 50_000  # consistency projection + its prediction head
    allow_recurrence: bool = False  # permit nn.RNNBase modules (e.g. the value-prefix LSTM)


@dataclass(frozen=True)
class CapacityRow:
    network: str
    parameters: int
    depth: int  # number of Linear / Conv layers (an LSTM counts its layers)
    stateful: bool  # holds recurrent state between calls


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def layer_depth(module: nn.Module) -> int:
    depth = 0
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d)):
            depth += 1
        elif isinstance(m, nn.RNNBase):
            depth += m.num_layers
    return depth


def is_stateful(module: nn.Module) -> bool:
    return any(isinstance(m, (nn.RNNBase, nn.RNNCellBase)) for m in module.modules())


def capacity_rows(networks: Mapping[str, nn.Module]) -> List[CapacityRow]:
    return [CapacityRow(name, count_parameters(net), layer_depth(net), is_stateful(net))
            for name, net in networks.items()]


def check_budget(rows: Iterable[CapacityRow], budget: CapacityBudget) -> None:
    """Raise ValueError naming the first network (or group) over `budget`."""
    rows = list(rows)
    for row in rows:
        if row.stateful and not budget.allow_recurrence:
            raise ValueError(
                f"network '{row.network}' contains a recurrent module (nn.RNNBase), which the "
                f"capacity budget refuses: turn off NetConfig.value_prefix_lstm, or set "
                f"NetConfig.budget.allow_recurrence=True to accept recurrence within an unroll")
        limit = budget.max_projection_params if row.network == PROJECTION_NETWORK \
            else budget.max_network_params
        key = "max_projection_params" if row.network == PROJECTION_NETWORK else "max_network_params"
        if row.parameters > limit:
            raise ValueError(
                f"network '{row.network}' has {row.parameters:,} parameters, over the limit of "
                f"{limit:,}: shrink it (NetConfig.latent_dim / hidden / conv_channels / "
                f"projection sizes) or raise NetConfig.budget.{key}")
    core = sum(r.parameters for r in rows if r.network in CORE_NETWORKS)
    if core > budget.max_core_params:
        raise ValueError(
            f"networks {' + '.join(CORE_NETWORKS)} have {core:,} parameters together, over the "
            f"limit of {budget.max_core_params:,}: shrink them or raise "
            f"NetConfig.budget.max_core_params")


def format_capacity_report(rows: Iterable[CapacityRow]) -> str:
    """A plain-text table of the rows, with the core total underneath."""
    rows = list(rows)
    header = ("network", "parameters", "depth", "stateful")
    body = [(r.network, f"{r.parameters:,}", str(r.depth), "yes" if r.stateful else "no") for r in rows]
    core = sum(r.parameters for r in rows if r.network in CORE_NETWORKS)
    body.append(("core total", f"{core:,}", "", ""))
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def fmt(line):
        return "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                         for i, (cell, w) in enumerate(zip(line, widths)))

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(header), rule, *map(fmt, body[:-1]), rule, fmt(body[-1])])
