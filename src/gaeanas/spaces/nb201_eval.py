"""The discrete NAS-Bench-201 network of one genotype, as the benchmark trains it (Dong & Yang, ICLR 2020)."""
from __future__ import annotations

import torch
from torch import nn

from ..ops import NB201_OPS
from .nb201 import EDGES, NUM_NODES, Genotype, macro_network


class InferCell(nn.Module):
    """One cell of a genotype: node j sums op(i -> j) over its inputs i < j; `none` edges are left out, and a node
    with no input is zero (its output shape is kept, so the network stays well formed)."""

    def __init__(self, genotype: Genotype, channels: int) -> None:
        super().__init__()
        self.edges = nn.ModuleList()
        self.wiring: list[tuple[int, int]] = []  # (to, from) of each module in self.edges
        for (to, src), op in zip(EDGES, genotype.ops):
            if op != "none":
                self.wiring.append((to, src))
                self.edges.append(NB201_OPS[op](channels, channels, 1, True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for node in range(1, NUM_NODES):
            total = torch.zeros_like(x)
            for (to, src), edge in zip(self.wiring, self.edges):
                if to == node:
                    total = total + edge(nodes[src])
            nodes.append(total)
        return nodes[-1]


class NetworkNB201(nn.Module):
    """stem conv3x3+BN -> N cells (C) -> basic block /2 -> N cells (2C) -> basic block /2 -> N cells (4C)
    -> BN, ReLU, global average pool, linear: the benchmark's macro network (C=16, N=5) around one cell.

    forward returns (logits, None), the evaluation networks' (main, auxiliary) pair; there is no auxiliary head.
    """

    def __init__(self, genotype: Genotype, channels: int = 16, cells: int = 5, num_classes: int = 10,
                 in_channels: int = 3) -> None:
        super().__init__()
        stem, layers, head = macro_network(channels, cells, num_classes, in_channels, lambda c: InferCell(genotype, c))
        self.stem, self.layers, self.head = stem, nn.Sequential(*layers), head  # checkpoints hold this order
        self.drop_path_prob = 0.0  # the trainer's interface; NAS-Bench-201 training has no drop-path

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.head(self.layers(self.stem(x))), None
