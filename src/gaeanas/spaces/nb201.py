"""NAS-Bench-201 search space (Dong & Yang, ICLR 2020): cell supernet, genotype strings, discretisation."""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from ..data.textfiles import read_text
from ..errors import ConfigError, GenotypeError
from ..kernels import SourceCache, fused_kernel
from ..ops import NB201_FUSED, NB201_OPS, ResNetBasicBlock
from ..relax import Mixing, mix_candidates

OPS: tuple[str, ...] = tuple(NB201_OPS)  # none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3
NUM_NODES = 4
# Edge order of the architecture string: (to, from) for edges 0..5.
EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
_EDGE_INDEX = {edge: i for i, edge in enumerate(EDGES)}
_TOKEN = re.compile(r"^([a-z0-9_]+)~(\d+)$")


@dataclass(frozen=True)
class Genotype:
    """A discrete NAS-Bench-201 cell: one operation name per edge, in architecture-string order."""

    ops: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.ops) != len(EDGES):
            raise GenotypeError(f"a NAS-Bench-201 cell has {len(EDGES)} edges, got {len(self.ops)} operations")
        unknown = [op for op in self.ops if op not in OPS]
        if unknown:
            raise GenotypeError(f"unknown operation(s) {unknown}; known: {list(OPS)}")

    def __str__(self) -> str:
        nodes = []
        for node in range(1, NUM_NODES):
            tokens = [f"{self.ops[_EDGE_INDEX[(node, j)]]}~{j}" for j in range(node)]
            nodes.append("|" + "|".join(tokens) + "|")
        return "+".join(nodes)

    @classmethod
    def parse(cls, text: str) -> "Genotype":
        """Parse `|op~0|+|op~0|op~1|+|op~0|op~1|op~2|` (whitespace around it ignored)."""
        text = text.strip()
        groups = text.split("+")
        if len(groups) != NUM_NODES - 1:
            raise GenotypeError(f"malformed NAS-Bench-201 string {text!r}: expected {NUM_NODES - 1} '+'-separated nodes")
        ops: list[str | None] = [None] * len(EDGES)
        for node, group in enumerate(groups, start=1):
            if not (group.startswith("|") and group.endswith("|")) or len(group) < 2:
                raise GenotypeError(f"malformed NAS-Bench-201 string {text!r}: node {node} is not '|...|'")
            tokens = group[1:-1].split("|")
            if len(tokens) != node:
                raise GenotypeError(f"malformed NAS-Bench-201 string {text!r}: node {node} needs {node} inputs")
            for j, token in enumerate(tokens):
                match = _TOKEN.match(token)
                if match is None or int(match.group(2)) != j:
                    raise GenotypeError(f"malformed NAS-Bench-201 string {text!r}: bad token {token!r} (want 'op~{j}')")
                ops[_EDGE_INDEX[(node, j)]] = match.group(1)
        return cls(tuple(ops))  # type: ignore[arg-type]

    def count(self, op: str) -> int:
        """How many edges use `op`."""
        return sum(o == op for o in self.ops)


def load_nb201_genotype(spec: str | os.PathLike) -> Genotype:
    """A NAS-Bench-201 genotype from its string, a text file holding it, or a search or train run directory."""
    text = str(spec).strip()
    if text.startswith("|"):
        return Genotype.parse(text)
    path = Path(text)
    if path.is_dir():
        result = path / "result.json"
        if not result.is_file():
            raise GenotypeError(f"{path} is a folder without result.json; is it a finished gaeanas run?")
        try:
            record = json.loads(read_text(result, "a run result (JSON)", GenotypeError, 16 * 2**20))
        except (json.JSONDecodeError, RecursionError) as err:
            raise GenotypeError(f"{result} is not valid JSON: {err}") from None
        genotype = record.get("genotype") if isinstance(record, dict) else None
        if not isinstance(genotype, str):
            raise GenotypeError(f"{result} holds no NAS-Bench-201 genotype")
        return Genotype.parse(genotype)
    if path.is_file():
        return Genotype.parse(read_text(path, "a genotype file", GenotypeError, 4096))
    raise GenotypeError(f"{text[:200]!r} is not a NAS-Bench-201 string (|op~0|+|op~0|op~1|+...), a file holding "
                        "one, or a run directory")


def discretise(probs: dict[str, torch.Tensor], ops: Sequence[str]) -> Genotype:
    """Argmax on each edge of the (6, k) cell weights over the candidate list `ops`."""
    return Genotype(tuple(ops[i] for i in probs["cell"].argmax(dim=-1).tolist()))


class MixedOp(nn.Module):
    """One edge: all candidate ops, combined by the edge's mixing weights."""

    def __init__(self, channels: int, ops: Sequence[str], affine: bool) -> None:
        super().__init__()
        self.names = tuple(ops)
        self.candidates = nn.ModuleList(NB201_OPS[name](channels, channels, 1, affine) for name in ops)
        self.is_zero = tuple(name == "none" for name in ops)

    def forward(self, x: torch.Tensor, weights: torch.Tensor, index: int | None = None,
                active: list[bool] | None = None) -> torch.Tensor:
        """Soft mixture sum_k w_k op_k(x), or only op `index` (hard sampling); ops off in `active` skipped."""
        out = mix_candidates(x, self.candidates, weights, index, self.is_zero, active)
        return out if out is not None else torch.zeros_like(x)


class SearchCell(nn.Module):
    """Four-node DAG: node i = sum_{j<i} edge(j->i)(node j); output node 3.

    fused: for the soft mixture, do the work of all edges that leave the same node together (one ReLU,
    one convolution and one BatchNorm per op kind, one pooling); the maths is that of the per-edge path.
    The kernel of an op is ops.NB201_FUSED[name]; an op without one raises NotImplementedError on that path.
    """

    def __init__(self, channels: int, ops: Sequence[str], affine: bool, fused: bool = True) -> None:
        super().__init__()
        self.ops = tuple(ops)
        self.fused = fused
        self.edges = nn.ModuleList(MixedOp(channels, ops, affine) for _ in EDGES)

    def forward(self, x: torch.Tensor, mixing: Mixing) -> torch.Tensor:
        if self.fused and mixing.index is None:
            return self._forward_fused(x, mixing.weights, mixing.active)
        return self._forward_per_edge(x, mixing)

    def _forward_per_edge(self, x: torch.Tensor, mixing: Mixing) -> torch.Tensor:
        nodes = [x]
        for node in range(1, NUM_NODES):
            total = None
            for j in range(node):
                e = _EDGE_INDEX[(node, j)]
                index = None if mixing.index is None else mixing.index[e]
                active = None if mixing.active is None else mixing.active[e]
                term = self.edges[e](nodes[j], mixing.weights[e], index, active)
                total = term if total is None else total + term
            nodes.append(total)
        return nodes[-1]

    def _forward_fused(self, x: torch.Tensor, weights: torch.Tensor, active: list | None = None) -> torch.Tensor:
        """Soft mixture, source node by source node; node j+1 is complete once sources 0..j are done."""
        nodes, partial = [x], [None] * NUM_NODES
        for j in range(NUM_NODES - 1):
            targets = range(j + 1, NUM_NODES)
            edge_ids = [_EDGE_INDEX[(i, j)] for i in targets]
            for k, per_edge in self._outgoing(nodes[j], edge_ids, weights, active).items():
                for i, e, out in zip(targets, edge_ids, per_edge):
                    if out is None:  # skipped (sparse): its weight is 0
                        continue
                    partial[i] = out if partial[i] is None else partial[i] + out  # out is already weighted
            nodes.append(partial[j + 1] if partial[j + 1] is not None else torch.zeros_like(x))
        return nodes[-1]

    def _outgoing(self, x: torch.Tensor, edge_ids: list[int], weights: torch.Tensor, active: list | None = None
                  ) -> dict[int, list[torch.Tensor | None]]:
        """Every non-zero op's weighted output on each edge leaving one node: {op column: [w_ek op_ek(x) or None per
        edge]}.

        active: per edge and op whether it runs (sparse skipping); an op off on an edge gives None there.
        """
        outs: dict[int, list[torch.Tensor | None]] = {}
        cache: SourceCache = {}  # x's derived inputs (its ReLU), shared between the ops' kernels
        for k, name in enumerate(self.ops):
            runs = [active is None or active[e][k] for e in edge_ids]
            if name == "none" or not any(runs):
                continue
            running = [e for e, r in zip(edge_ids, runs) if r]
            blocks = [self.edges[e].candidates[k] for e in running]
            computed = iter(fused_kernel(NB201_FUSED, name)(x, blocks, cache, weights[running, k]))
            outs[k] = [next(computed) if r else None for r in runs]
        return outs


def macro_network(channels: int, cells: int, num_classes: int, in_channels: int,
                  make_cell: Callable[[int], nn.Module]) -> tuple[nn.Module, list[nn.Module], nn.Module]:
    """NAS-Bench-201's skeleton around a cell, as (stem, layers, head), built in that order: stem conv3x3+BN; N cells
    at C, a ResNet basic block /2, N cells at 2C, another, N cells at 4C; BN, ReLU, global average pool, linear."""
    if channels < 1 or cells < 1 or num_classes < 2:
        raise ConfigError(f"need channels >= 1, cells >= 1, classes >= 2; got {channels}, {cells}, {num_classes}")
    stem = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
    layers: list[nn.Module] = []
    c = channels
    for stage in range(3):
        if stage > 0:
            layers.append(ResNetBasicBlock(c, 2 * c, 2))
            c *= 2
        layers.extend(make_cell(c) for _ in range(cells))
    head = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(c, num_classes))
    return stem, layers, head


class Supernet(nn.Module):
    """NAS-Bench-201 network with searchable cells.

    stem conv3x3+BN -> N cells (C) -> basic block /2 -> N cells (2C) -> basic block /2 -> N cells (4C)
    -> BN, ReLU, global average pool, linear. All cells share one architecture (6 edges).
    """

    def __init__(self, channels: int = 16, cells: int = 5, num_classes: int = 10,
                 ops: Sequence[str] = OPS, affine: bool = False, in_channels: int = 3, fused: bool = True) -> None:
        super().__init__()
        self.ops = tuple(ops)
        stem, layers, head = macro_network(channels, cells, num_classes, in_channels, lambda c: SearchCell(c, self.ops, affine, fused))
        self.stem, self.layers, self.head = stem, nn.ModuleList(layers), head  # checkpoints hold this order

    def forward(self, x: torch.Tensor, mixings: dict[str, Mixing]) -> torch.Tensor:
        mixing = mixings["cell"]
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x, mixing) if isinstance(layer, SearchCell) else layer(x)
        return self.head(x)


def check_method(method) -> None:
    """Refuse methods whose supernet shape this space does not have (partial channels, edge weights)."""
    if method.partial_channels != 1 or method.edge_norm:
        raise ConfigError(f"method {method.name!r} uses partial channels / edge normalisation, "
                          "which the NAS-Bench-201 space does not have; use --space darts")


def build_supernet(channels: int, cells: int, num_classes: int, ops: Sequence[str], method=None) -> Supernet:
    """The search-time supernet (BN without affine parameters)."""
    if method is not None:
        check_method(method)
    return Supernet(channels, cells, num_classes, ops, affine=False)


def arch_shapes(ops: Sequence[str], method=None) -> dict[str, tuple[int, ...]]:
    """Architecture tensors of this space: one (6, k) decision for the shared cell."""
    if method is not None:
        check_method(method)
    return {"cell": (len(EDGES), len(ops))}
