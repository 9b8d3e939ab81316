"""DARTS CNN search space (Liu et al., ICLR 2019), with PC-DARTS partial channels and edge norm (Xu et al., 2020).

Architecture tensors (rows are decisions, the last dimension is the simplex / softmax):
  "normal", "reduce": (14, k) operation weights of the normal and the reduction cell, edges in EDGES order;
  with edge normalisation (PC-DARTS, GAEA PC-DARTS) also "normal_edges{n}" and "reduce_edges{n}" for
  n = 2..5: (n,) weights beta of the n incoming edges of node n (node n has inputs 0..n-1).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..errors import ConfigError, GenotypeError
from ..kernels import SourceCache, fused_kernel, gradient_in_input_layout, tile_channels
from ..ops import DARTS_FUSED, DARTS_OPS, FactorizedReduce, ReLUConvBN, Zero
from ..relax import Mixing, mix_candidates
from ..relax.partial import PartialChannels, channel_shuffle
from .darts_genotypes import OPS, STEPS, Genotype

MULTIPLIER = 4  # a cell outputs the concatenation of its 4 intermediate nodes
STEM_MULTIPLIER = 3  # the stem outputs 3C channels
CELL_KINDS = ("normal", "reduce")
# (node, input) for each of the 14 edges, DARTS order: node 2 <- 0, 1; node 3 <- 0, 1, 2; ...
EDGES: tuple[tuple[int, int], ...] = tuple((node, j) for node in range(2, 2 + STEPS) for j in range(node))
NODES: tuple[int, ...] = tuple(range(2, 2 + STEPS))
CONCAT: tuple[int, ...] = NODES


_FIRST_EDGE = {node: EDGES.index((node, 0)) for node in NODES}  # node -> index of its edge from input 0


def edge_tensor_name(kind: str, node: int) -> str:
    """Name of the edge-normalisation tensor of `node` (2..5) in cell `kind` ("normal" or "reduce")."""
    return f"{kind}_edges{node}"


def reduction_cells(cells: int) -> tuple[int, int]:
    """Indices of the two reduction cells among L cells: L//3 and 2L//3."""
    return cells // 3, 2 * cells // 3


def _partial_k(method) -> int:
    return 1 if method is None else int(method.partial_channels)


def _edge_norm(method) -> bool:
    return method is not None and bool(method.edge_norm)


def _check_ops(ops: Sequence[str]) -> None:
    unknown = [op for op in ops if op not in DARTS_OPS]
    if unknown:
        raise ConfigError(f"unknown DARTS operation(s) {unknown}; known: {list(OPS)}")
    if not any(op != "none" for op in ops):
        raise ConfigError("the DARTS space needs at least one candidate operation besides 'none'")


class MixedOp(nn.Module):
    """One DARTS edge: every candidate op at `channels` and `stride`, combined by the edge's mixing weights.

    Pooling ops are followed by BN (affine as given), as in the DARTS search network.
    """

    def __init__(self, channels: int, stride: int, ops: Sequence[str], affine: bool) -> None:
        super().__init__()
        self.names = tuple(ops)
        self.candidates = nn.ModuleList(self._build(name, channels, stride, affine) for name in ops)
        self.is_zero = tuple(name == "none" for name in ops)
        self.zero = Zero(channels, stride)  # output shape when every op is skipped

    @staticmethod
    def _build(name: str, channels: int, stride: int, affine: bool) -> nn.Module:
        op = DARTS_OPS[name](channels, stride, affine)
        if "pool" in name:
            op = nn.Sequential(op, nn.BatchNorm2d(channels, affine=affine))
        return op

    def forward(self, x: torch.Tensor, weights: torch.Tensor, index: int | None = None,
                active: list[bool] | None = None) -> torch.Tensor:
        """Soft mixture sum_k w_k op_k(x), or only op `index` (hard sampling); ops off in `active` skipped."""
        out = mix_candidates(x, self.candidates, weights, index, self.is_zero, active)
        return out if out is not None else self.zero(x)


class SearchCell(nn.Module):
    """A DARTS cell: two preprocessed inputs, 4 nodes each summing mixed edges from all earlier states.

    c_pp, c_p: channels of the two inputs (outputs of the cells two back and one back); c: the cell's
    channels per node; output 4c channels. `partial`: PC-DARTS K (1 for none).
    fused: for the soft mixture, run each op kind once over all the edges that leave the same state
    (stacked along channels: grouped convolutions, one BN); the maths is that of the per-edge path. The
    kernel of an op is ops.DARTS_FUSED[name]; an op without one raises NotImplementedError on that path.
    """

    def __init__(self, c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool, ops: Sequence[str],
                 partial: int = 1, affine: bool = False, fused: bool = True) -> None:
        super().__init__()
        self.reduction = reduction
        self.kind = "reduce" if reduction else "normal"
        self.ops, self.partial, self.fused = tuple(ops), partial, fused
        self.pre0 = FactorizedReduce(c_pp, c, affine) if reduction_prev else ReLUConvBN(c_pp, c, 1, 1, 0, affine)
        self.pre1 = ReLUConvBN(c_p, c, 1, 1, 0, affine)
        self.edges = nn.ModuleList(self._edge(c, 2 if reduction and j < 2 else 1, ops, partial, affine)
                                   for _, j in EDGES)

    @staticmethod
    def _edge(c: int, stride: int, ops: Sequence[str], partial: int, affine: bool) -> nn.Module:
        if partial == 1:
            return MixedOp(c, stride, ops, affine)
        return PartialChannels(MixedOp(c // partial, stride, ops, affine), c, partial, stride)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, mixing: Mixing,
                betas: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """s0, s1: (B, c_pp, H, W), (B, c_p, H, W); betas: per node (n,) edge weights or None -> (B, 4c, H', W')."""
        states = [self.pre0(s0), self.pre1(s1)]  # 2 x (B, c, H, W)
        if self.fused and mixing.index is None:
            return self._forward_fused(states, mixing.weights, betas, mixing.active)
        for node in NODES:
            first = _FIRST_EDGE[node]
            total = None
            for j, h in enumerate(states):
                e = first + j
                index = None if mixing.index is None else mixing.index[e]
                active = None if mixing.active is None else mixing.active[e]
                term = self.edges[e](h, mixing.weights[e], index, active)
                if betas is not None:
                    term = betas[node - 2][j] * term
                total = term if total is None else total + term
            states.append(total)
        return torch.cat(states[-MULTIPLIER:], dim=1)  # (B, 4c, H', W')

    def _forward_fused(self, states: list[torch.Tensor], weights: torch.Tensor,
                       betas: Sequence[torch.Tensor] | None, active: list | None = None) -> torch.Tensor:
        """Soft mixture, source state by source state; node n is complete once sources 0..n-1 are done.

        With partial channels, a node is shuffle(cat(sum_j beta_j mixed_j, sum_j beta_j bypass_j)): the
        shuffle is a fixed permutation, so it is applied once per node instead of once per edge.
        """
        through: dict[int, torch.Tensor] = {}
        bypass: dict[int, torch.Tensor] = {}
        for j in range(len(NODES) + 1):  # sources: the two inputs and nodes 2..4 (node 5 only feeds the output)
            targets = [node for node in NODES if node > j]
            edge_ids = [_FIRST_EDGE[node] + j for node in targets]
            scale = [None if betas is None else betas[node - 2][j] for node in targets]
            x = states[j]
            if self.partial > 1:
                part = x.shape[1] // self.partial
                # split, not two slices: slice's backward builds NCHW gradients, split's is a cat (layout kept)
                x, rest = x.split([part, x.shape[1] - part], dim=1)
                kept = self.edges[edge_ids[0]].bypass(rest)  # (B, c - c/K, H', W'), the same on every edge
                for node, s in zip(targets, scale):
                    term = kept if s is None else s * kept
                    bypass[node] = bypass[node] + term if node in bypass else term
            edge_weights = weights[edge_ids]  # (E, k)
            if betas is not None:
                edge_weights = edge_weights * torch.stack(scale).unsqueeze(-1)
            mixed = self._mixed_outgoing(x, edge_ids, edge_weights, active)
            for node, out in zip(targets, mixed.chunk(len(targets), dim=1)):
                through[node] = through[node] + out if node in through else out
            if j + 1 in NODES:
                states.append(self._node_output(through[j + 1], bypass.get(j + 1)))
        return torch.cat(states[-MULTIPLIER:], dim=1)  # (B, 4c, H', W')

    def _node_output(self, through: torch.Tensor, bypass: torch.Tensor | None) -> torch.Tensor:
        if bypass is None:
            return through
        return channel_shuffle(torch.cat([through, bypass], dim=1), self.partial)

    def _mixed_outgoing(self, x: torch.Tensor, edge_ids: list[int], edge_weights: torch.Tensor,
                        active: list | None = None) -> torch.Tensor:
        """sum_k w_ek op_ek(x) for the E edges leaving one state, stacked: x (B, c, H, W) -> (B, E*c, H', W').

        active (sparse skipping): an op runs, on all E edges at once, unless it is off on every one of them;
        where it runs but is off, its weight is 0.
        """
        n = len(edge_ids)
        mixed_ops = [_mixed_op(self.edges[e]) for e in edge_ids]
        cache: SourceCache = {}  # x's derived inputs, shared between the ops' kernels
        out = None
        for k, name in enumerate(self.ops):
            if name == "none" or (active is not None and not any(active[e][k] for e in edge_ids)):
                continue
            # (B, E*c, H', W'), edge e's channels times its weight for op k
            term = fused_kernel(DARTS_FUSED, name)(x, [m.candidates[k] for m in mixed_ops], cache, edge_weights[:, k])
            out = term if out is None else out + term
        return out if out is not None else tile_channels(mixed_ops[0].zero(x), n)


def _mixed_op(edge: nn.Module) -> MixedOp:
    return edge.edge if isinstance(edge, PartialChannels) else edge


class Supernet(nn.Module):
    """The DARTS search network.

    stem conv3x3 (3 -> 3C) + BN -> L cells (reductions at L//3 and 2L//3, where channels double)
    -> global average pool -> linear. Normal cells share "normal", reduction cells "reduce".
    partial: PC-DARTS K (1: all channels through the mixed ops); edge_norm: weight each node's
    incoming edges by the "{kind}_edges{n}" tensors.
    """

    def __init__(self, channels: int = 16, cells: int = 8, num_classes: int = 10, ops: Sequence[str] = OPS,
                 partial: int = 1, edge_norm: bool = False, affine: bool = False, in_channels: int = 3,
                 fused: bool = True) -> None:
        super().__init__()
        _check_config(channels, cells, num_classes, partial)
        _check_ops(ops)
        self.ops, self.partial, self.edge_norm = tuple(ops), partial, edge_norm
        c_stem = STEM_MULTIPLIER * channels
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem))
        c_pp, c_p, c = c_stem, c_stem, channels
        reductions = reduction_cells(cells)
        reduction_prev = False
        self.cells = nn.ModuleList()
        for i in range(cells):
            reduction = i in reductions
            if reduction:
                c *= 2
            self.cells.append(SearchCell(c_pp, c_p, c, reduction, reduction_prev, self.ops, partial, affine, fused))
            reduction_prev = reduction
            c_pp, c_p = c_p, MULTIPLIER * c
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_p, num_classes))

    def forward(self, x: torch.Tensor, mixings: dict[str, Mixing]) -> torch.Tensor:
        """x: (B, 3, H, W) -> logits (B, num_classes)."""
        betas = {kind: self._betas(mixings, kind) for kind in CELL_KINDS}
        s0 = s1 = self.stem(x)  # (B, 3C, H, W)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, mixings[cell.kind], betas[cell.kind])
        return self.head(gradient_in_input_layout(s1))  # pooling's backward is NCHW; the last cell's BNs are not

    def _betas(self, mixings: dict[str, Mixing], kind: str) -> list[torch.Tensor] | None:
        if not self.edge_norm:
            return None
        return [mixings[edge_tensor_name(kind, node)].weights for node in NODES]


def _check_config(channels: int, cells: int, num_classes: int, partial: int) -> None:
    if channels < 1 or num_classes < 2:
        raise ConfigError(f"the DARTS supernet needs --channels >= 1 and data with at least 2 classes; got "
                          f"{channels} channels and {num_classes} classes")
    if cells < 3:
        raise ConfigError(f"--cells must be at least 3 in the darts space, so that its two reduction cells "
                          f"(at L//3 and 2L//3) exist; got {cells}")
    if partial < 1 or channels % partial:
        raise ConfigError(f"--channels must be divisible by {partial} for partial channels (1/{partial} of them go "
                          f"through the mixed op); got {channels}")


def check_method(method) -> None:
    """Every registered method fits the DARTS space (it has partial channels and edge weights), except those that need
    per-example mixing weights (XNAS' per-example clipping), which its fused cell does not take."""
    if method is not None and method.per_example:
        raise ConfigError(f"method {method.name!r} clips each example's architecture gradient, which the DARTS "
                          "space's supernet does not support; use --space nb201 or a nb1shot1 space")


def build_supernet(channels: int, cells: int, num_classes: int, ops: Sequence[str] = OPS, method=None) -> Supernet:
    """The search-time supernet (BN without affine parameters), with the method's partial channels / edge norm."""
    return Supernet(channels, cells, num_classes, ops, partial=_partial_k(method), edge_norm=_edge_norm(method),
                    affine=False)


def arch_shapes(ops: Sequence[str] = OPS, method=None) -> dict[str, tuple[int, ...]]:
    """(14, k) op weights per cell kind, plus (n,) edge weights per node n = 2..5 with edge normalisation."""
    _check_ops(ops)
    shapes: dict[str, tuple[int, ...]] = {kind: (len(EDGES), len(ops)) for kind in CELL_KINDS}
    if _edge_norm(method):
        for kind in CELL_KINDS:
            shapes.update({edge_tensor_name(kind, node): (node,) for node in NODES})
    return shapes


def _cell_genotype(weights: torch.Tensor, betas: list[torch.Tensor] | None, ops: Sequence[str]
                   ) -> tuple[tuple[str, int], ...]:
    """Top-2 incoming edges per node by best non-`none` score (times beta), each with its best non-`none` op."""
    if tuple(weights.shape) != (len(EDGES), len(ops)):
        raise GenotypeError(f"DARTS cell weights must be ({len(EDGES)}, {len(ops)}), got {tuple(weights.shape)}")
    allowed = [i for i, op in enumerate(ops) if op != "none"]
    rows = weights.detach().float().cpu().tolist()
    gene: list[tuple[str, int]] = []
    for node in NODES:
        first = _FIRST_EDGE[node]
        scale = [1.0] * node if betas is None else betas[node - 2].detach().float().cpu().tolist()
        best: list[tuple[float, int]] = []  # (score, op column) per input j
        for j in range(node):
            row = rows[first + j]
            k = max(allowed, key=lambda i: row[i])  # first maximum on ties
            best.append((row[k] * scale[j], k))
        kept = sorted(range(node), key=lambda j: -best[j][0])[:2]  # strongest first; stable on ties
        gene.extend((ops[best[j][1]], j) for j in kept)
    return tuple(gene)


def discretise(probs: dict[str, torch.Tensor], ops: Sequence[str]) -> Genotype:
    """The DARTS / PC-DARTS genotype of the architecture weights over the candidate list `ops`.

    For each node, each incoming edge scores the largest non-`none` weight of its row (times the edge's
    beta when "{kind}_edges{n}" tensors are present); the 2 strongest edges are kept, strongest first,
    each with its argmax non-`none` op. concat = nodes 2..5.
    """
    _check_ops(ops)
    cells = {}
    for kind in CELL_KINDS:
        names = [edge_tensor_name(kind, node) for node in NODES]
        betas = [probs[n] for n in names] if all(n in probs for n in names) else None
        cells[kind] = _cell_genotype(probs[kind], betas, ops)
    genotype = Genotype(cells["normal"], CONCAT, cells["reduce"], CONCAT)
    genotype.validate()
    return genotype


__all__ = ["OPS", "EDGES", "NODES", "CELL_KINDS", "MULTIPLIER", "MixedOp", "SearchCell", "Supernet", "build_supernet",
           "check_method", "arch_shapes", "discretise", "edge_tensor_name", "reduction_cells"]
