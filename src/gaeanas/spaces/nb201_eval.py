"""The discrete NAS-Bench-201 network of one genotype, as the benchmark trains it (Dong & Yang, ICLR 2020)."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from ..ops import NB201_OPS, ResNetBasicBlock
from .nb201 import EDGES, NUM_NODES, Genotype


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
        if channels < 1 or cells < 1 or num_classes < 2:
            raise ConfigError(f"need channels >= 1, cells >= 1, classes >= 2; got {channels}, {cells}, {num_classes}")
        self.stem = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
        layers: list[nn.Module] = []
        c = channels
        for stage in range(3):
            if stage > 0:
                layers.append(ResNetBasicBlock(c, 2 * c, 2))
                c *= 2
            layers.extend(InferCell(genotype, c) for _ in range(cells))
        self.layers = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(c, num_classes))
        self.drop_path_prob = 0.0  # the trainer's interface; NAS-Bench-201 training has no drop-path

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.head(self.layers(self.stem(x))), None
