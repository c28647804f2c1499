"""The search tree of B environments as fixed-size numpy arrays (no per-node Python objects).

Node 0 is the root of every tree. Nodes are numbered in creation order, and a node's index is
also its slot in the latent pool the driver keeps on the model's device, so the tree itself only
holds indices and scalars. A tree for `num_simulations` simulations needs at most
`num_simulations + 1` nodes: every simulation adds one node or none.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List

import numpy as np

from planners import kernels

ROOT = 0
NO_CHILD = -1


@dataclass
class Tree:
    visit_count: np.ndarray  # [B, N] int32
    value_sum: np.ndarray  # [B, N] float64: sum of discounted returns backed up through the node
    leaf_value: np.ndarray  # [B, N] float64: objective.leaf_value when the node was created (0 if terminal)
    edge_reward: np.ndarray  # [B, N] float64: objective.edge_reward of the edge parent -> node
    prior: np.ndarray  # [B, N, A] float64: selection prior (masked, mixed with uniform; root: + noise)
    children: np.ndarray  # [B, N, A] int32: child node index, NO_CHILD where not expanded
    parent: np.ndarray  # [B, N] int32 (NO_CHILD for the root)
    action_from_parent: np.ndarray  # [B, N] int32 (-1 for the root)
    depth: np.ndarray  # [B, N] int32 (0 for the root)
    terminal: np.ndarray  # [B, N] bool: no transition leaves this node
    legal: np.ndarray  # [B, N, A] bool: actions selection may take at this node
    num_nodes: np.ndarray  # [B] int32: nodes in use; the next free slot
    min_max_q: np.ndarray  # [B, 2] float64: smallest and largest Q seen in backups (pUCT normalization)
    discount: float
    max_depth: int  # nodes at this depth are leaves (objective.max_depth; N when unlimited)

    @classmethod
    def allocate(cls, batch_size: int, num_nodes: int, num_actions: int, discount: float,
                 max_depth: int) -> "Tree":
        B, N, A = batch_size, num_nodes, num_actions
        return cls(
            visit_count=np.zeros((B, N), np.int32),
            value_sum=np.zeros((B, N), np.float64),
            leaf_value=np.zeros((B, N), np.float64),
            edge_reward=np.zeros((B, N), np.float64),
            prior=np.zeros((B, N, A), np.float64),
            children=np.full((B, N, A), NO_CHILD, np.int32),
            parent=np.full((B, N), NO_CHILD, np.int32),
            action_from_parent=np.full((B, N), -1, np.int32),
            depth=np.zeros((B, N), np.int32),
            terminal=np.zeros((B, N), np.bool_),
            legal=np.zeros((B, N, A), np.bool_),
            num_nodes=np.ones(B, np.int32),  # the root
            min_max_q=np.stack([np.full(B, np.inf), np.full(B, -np.inf)], axis=1),
            discount=float(discount),
            max_depth=int(max_depth),
        )

    @property
    def batch_size(self) -> int:
        return self.visit_count.shape[0]

    @property
    def num_actions(self) -> int:
        return self.prior.shape[2]

    def child_stats(self, node: int = ROOT):
        """Per-action (visits, edge_reward, child_value, q) of `node` in every tree, each [B, A].

        child_value is the child's mean backed-up value; q = edge_reward + discount * child_value.
        Unvisited actions have 0 visits and nan elsewhere.
        """
        B, A = self.batch_size, self.num_actions
        visits = np.empty((B, A), np.int64)
        edge_reward, child_value, q = (np.empty((B, A)) for _ in range(3))
        kernels.root_child_stats(self.children, self.visit_count, self.value_sum, self.edge_reward,
                                 self.discount, node, visits, edge_reward, child_value, q)
        return visits, edge_reward, child_value, q

    def node_value(self, node: int = ROOT) -> np.ndarray:
        """Mean backed-up value of `node` in every tree, [B]."""
        return self.value_sum[:, node] / np.maximum(self.visit_count[:, node], 1)

    def deepest(self) -> np.ndarray:
        """Largest node depth reached in each tree, [B]."""
        return kernels.deepest(self.depth, self.num_nodes)


def principal_variation(tree: Tree, b: int) -> List[int]:
    """Actions from the root of tree `b` following the most-visited child (lowest action on ties)."""
    actions: List[int] = []
    node = ROOT
    while True:
        child = tree.children[b, node]
        visits = np.where(child >= 0, tree.visit_count[b, np.maximum(child, 0)], 0)
        if visits.max(initial=0) == 0:
            return actions
        action = int(np.argmax(visits))
        actions.append(action)
        node = int(child[action])
