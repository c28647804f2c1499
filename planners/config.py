"""Settings of the tree search. One small dataclass; the objective is *not* in here."""
from __future__ import annotations

import re
from dataclasses import dataclass


# The prior setting an agent takes when its objective is swapped (EZAgent.set_objective, `eval
# --value` and the other objective flags) unless one is given: chosen on the transfer suite's
# development objectives (agent/studies/transfer.py, choose_prior), never on its evaluation ones.
# Measured in benchmarks/results/transfer.json (README "The policy prior after a swap").
# CartPole's balance lives in the learned prior, and a prior flattened everywhere (or at the root
# alone) drops the pole; the grid worlds need the root flattened to leave the old goal. Half
# flat at the root and learned below serves both.
PRIOR_AFTER_SWAP = "root-mixed(0.5)"
# The same for an objective with a policy prior of its own (refit's, Objective.has_prior), chosen
# the same way on refit's dev scores (README "The policy prior after a swap"): its own prior,
# fitted on the actions that achieve the replay graph's values, needs no flattening.
PRIOR_OWN_PRIOR = "learned"


@dataclass
class SearchConfig:
    num_simulations: int = 50
    algorithm: str = "puct"  # "puct" (MuZero/EfficientZero) or "gumbel" (sequential halving root)
    pb_c_init: float = 1.25  # c1 in MuZero's pUCT
    pb_c_base: float = 19652.0  # c2
    dirichlet_alpha: float = 0.3
    root_exploration_fraction: float = 0.25
    # How much the learned policy prior steers selection: "learned", "uniform" or "mixed(alpha)"
    # (alpha * learned + (1 - alpha) * uniform). A prior trained under one objective is itself a
    # learned proxy for it: after swapping the objective, a learned prior can pull the search back
    # toward the old goal, so it can be flattened here; "root-uniform" (or "root-mixed(alpha)")
    # flattens it at the root only.
    prior: str = "learned"
    # Gumbel MuZero settings (algorithm="gumbel").
    gumbel_max_considered: int = 16
    gumbel_c_visit: float = 50.0
    gumbel_c_scale: float = 0.1
    # What the policy is trained toward: "visits" (the root's visit distribution, MuZero's),
    # "improved" (softmax(log prior + sigma(completed Q)), Gumbel MuZero's improved policy, which
    # moves toward the actions the search values, however few visits the prior let them have), or
    # "auto": each algorithm's own (pUCT: visits; Gumbel: improved). "improved" scales sigma by the
    # gumbel_c_* settings under either algorithm.
    policy_target: str = "auto"
    # How the search calls the model: "auto" compiles the MLP's step into the search loop where
    # it can (planners/fused.py), "torch" calls torch every simulation. Same trees either way.
    inference: str = "auto"

    def __post_init__(self):
        if self.num_simulations < 1:
            raise ValueError(f"num_simulations must be >= 1, got {self.num_simulations}")
        if self.algorithm not in ("puct", "gumbel"):
            raise ValueError(f"search algorithm must be 'puct' or 'gumbel', got {self.algorithm!r}")
        if self.policy_target not in ("auto", "visits", "improved"):
            raise ValueError(f"search.policy_target must be 'auto', 'visits' or 'improved', got {self.policy_target!r}")
        if self.inference not in ("auto", "torch"):
            raise ValueError(f"search.inference must be 'auto' or 'torch', got {self.inference!r}")
        self.root_prior_mix()  # validate early

    def trains_on_visits(self) -> bool:
        """Whether the policy target is the root's visit distribution (else the improved policy)."""
        if self.policy_target == "auto":
            return self.algorithm == "puct"
        return self.policy_target == "visits"

    def prior_mix(self) -> float:
        """Weight of the learned prior against a uniform one below the root: 1.0 learned, 0.0 uniform."""
        return 1.0 if self.prior.startswith("root-") else self._mix(self.prior)

    def root_prior_mix(self) -> float:
        """The same weight at the root: 'root-X' sets X there and keeps the learned prior below,
        so every first action gets looked at while the learned policy still guides the rollouts
        that value it (CartPole's balance lives in that policy)."""
        return self._mix(self.prior[len("root-"):] if self.prior.startswith("root-") else self.prior)

    def _mix(self, prior: str) -> float:
        if prior == "learned":
            return 1.0
        if prior == "uniform":
            return 0.0
        m = re.fullmatch(r"mixed\(\s*([0-9.]+)\s*\)", prior)
        if m and 0.0 <= float(m.group(1)) <= 1.0:
            return float(m.group(1))
        raise ValueError(f"prior must be 'learned', 'uniform' or 'mixed(alpha)' with alpha in [0, 1], each "
                         f"optionally for the root only ('root-uniform'), got {self.prior!r}")
