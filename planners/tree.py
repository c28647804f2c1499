"""The search trees of B environments: one record of fixed-size numpy arrays, passed whole.

Node 0 is the root of every tree. Nodes are numbered in creation order, and a node's index is
also its slot in the latent pool the driver keeps on the model's device, so the tree itself only
holds indices and scalars. A tree for `num_simulations` simulations needs at most
`num_simulations + 1` nodes: every simulation adds one node or none.

`Tree` is a NamedTuple so that the Numba kernels take it as one argument (Numba compiles a
NamedTuple of arrays and scalars like a struct).
"""
from __future__ import annotations

from typing import List, NamedTuple

import numpy as np

ROOT = 0
NO_CHILD = -1


class Tree(NamedTuple):
    visit_count: np.ndarray  # [B, N] int32
    value_sum: np.ndarray  # [B, N] float64: sum of discounted returns backed up through the node
    leaf_value: np.ndarray  # [B, N] float64: objective.leaf_value when the node was created (terminal_value if terminal)
    edge_reward: np.ndarray  # [B, N] float64: objective.edge_reward of the edge parent -> node
    prior: np.ndarray  # [B, N, A] float64: selection prior (masked, mixed with uniform; root: + noise)
    children: np.ndarray  # [B, N, A] int32: child node index, NO_CHILD where not expanded
    parent: np.ndarray  # [B, N] int32 (NO_CHILD for the root)
    action_from_parent: np.ndarray  # [B, N] int32 (-1 for the root)
    depth: np.ndarray  # [B, N] int32 (0 for the root)
    terminal: np.ndarray  # [B, N] bool: no transition leaves this node (absorbing)
    legal: np.ndarray  # [B, N, A] bool: actions selection may take at this node
    num_nodes: np.ndarray  # [B] int32: nodes in use; the next free slot
    min_max_q: np.ndarray  # [B, 2] float64: smallest and largest Q seen in backups (pUCT normalization)
    discount: float
    max_depth: int  # nodes at this depth are leaves (objective.max_depth; N when unlimited)

    @classmethod
    def allocate(cls, batch_size: int, num_nodes: int, num_actions: int, discount: float,
                 max_depth: int) -> "Tree":
        B, N, A = batch_size, num_nodes, num_actions
        # np.empty then fill: np.full's Python wrapper costs more than the fill at search sizes.
        children, parent, action_from_parent = (np.empty(shape, np.int32) for shape in ((B, N, A), (B, N), (B, N)))
        children.fill(NO_CHILD)
        parent.fill(NO_CHILD)
        action_from_parent.fill(-1)
        min_max_q = np.empty((B, 2), np.float64)
        min_max_q[:, 0] = np.inf
        min_max_q[:, 1] = -np.inf
        return cls(
            visit_count=np.zeros((B, N), np.int32),
            value_sum=np.zeros((B, N), np.float64),
            leaf_value=np.zeros((B, N), np.float64),
            edge_reward=np.zeros((B, N), np.float64),
            prior=np.zeros((B, N, A), np.float64),
            children=children,
            parent=parent,
            action_from_parent=action_from_parent,
            depth=np.zeros((B, N), np.int32),
            terminal=np.zeros((B, N), np.bool_),
            legal=np.zeros((B, N, A), np.bool_),
            num_nodes=np.ones(B, np.int32),  # the root
            min_max_q=min_max_q,
            discount=float(discount),
            max_depth=int(max_depth),
        )

    @property
    def batch_size(self) -> int:
        return self.visit_count.shape[0]

    @property
    def num_actions(self) -> int:
        return self.prior.shape[2]

    def node_value(self, node: int = ROOT) -> np.ndarray:
        """Mean backed-up value of `node` in every tree, [B]."""
        return self.value_sum[:, node] / np.maximum(self.visit_count[:, node], 1)


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
