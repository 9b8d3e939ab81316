"""NAS-Bench-1Shot1 search spaces 1-3 (Zela, Siems & Hutter, ICLR 2020): one-shot supernets over NAS-Bench-101 cells.

A cell has an input node 0, intermediate nodes 1..n (n = 4 or 5) and an output node n+1. Each intermediate node sums
its parents' outputs, then applies one operation (conv1x1-BN-ReLU, conv3x3-BN-ReLU or max-pool 3x3); the output
concatenates the nodes it takes and adds a 1x1 projection of the input when the input is one of its parents. The
space fixes how many parents each node has (SPACES below); the one-shot model mixes the operations per node and
weighs the candidate parents per node.

Architecture tensors (rows are decisions, the last dimension is the simplex / softmax):
  "ops": (n, 3) operation weights of nodes 1..n, columns in OPS order;
  "inputs{m}": (m,) weights of node m's candidate parents 0..m-1, for each node with more candidates than parents;
  "output": (n+1,) weights of the output's candidate parents 0..n.
Discretisation (the benchmark's rule): each node's argmax operation, and for each weighted node its top-k parents
by weight, k from the space. The genotype converts to a NAS-Bench-101 adjacency matrix and operation list.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, GenotypeError
from ..methods import GumbelSampling
from ..nasbench import nb101
from ..ops import NB101_OPS, ConvBNReLU, ReLUConvBN
from ..relax import Mixing, mix_candidates
from ..relax.partial import PartialChannels

OPS: tuple[str, ...] = ("maxpool3x3", "conv3x3-bn-relu", "conv1x1-bn-relu")  # the 1Shot1 code's column order
OUTPUT_TOKEN = "output"


@dataclass(frozen=True)
class SpaceSpec:
    """One 1Shot1 space: parents[i] is the number of parents of node i+1 (the last entry: the output node)."""

    number: int
    parents: tuple[int, ...]
    best_test_error: float  # the space's lowest NAS-Bench-101 mean test error at 108 epochs (regret's zero)

    @property
    def nodes(self) -> int:
        """Intermediate nodes."""
        return len(self.parents) - 1

    @property
    def output(self) -> int:
        return len(self.parents)

    def weighted(self, node: int) -> bool:
        """Whether node (1..output) chooses its parents: it has more candidates (0..node-1) than parents."""
        return node > self.parents[node - 1]


# nasbench_analysis/search_spaces/search_space_{1,2,3}.py: num_parents_per_node and test_min_error.
SPECS: dict[int, SpaceSpec] = {
    1: SpaceSpec(1, (1, 2, 2, 2, 2), 0.05448716878890991),
    2: SpaceSpec(2, (1, 1, 2, 2, 3), 0.057592153549194336),
    3: SpaceSpec(3, (1, 1, 1, 2, 2, 2), 0.05338543653488159),
}


SPACE_NAMES: tuple[str, ...] = tuple(f"nb1shot1-s{n}" for n in SPECS)  # their names in the space registry


def input_tensor_name(node: int) -> str:
    """Name of the parent-weight tensor of intermediate node `node`."""
    return f"inputs{node}"


@dataclass(frozen=True)
class Genotype:
    """A discrete 1Shot1 cell: an operation per intermediate node, and the parents of each node and of the output.

    str: `conv3x3-bn-relu~0|maxpool3x3~0~1|...|output~2~4`, one `op~parent~parent` token per node.
    """

    space: int
    ops: tuple[str, ...]
    parents: tuple[tuple[int, ...], ...]

    def __post_init__(self) -> None:
        if self.space not in SPECS:
            raise GenotypeError(f"unknown NAS-Bench-1Shot1 space {self.space}; known: {sorted(SPECS)}")
        spec = SPECS[self.space]
        if len(self.ops) != spec.nodes or len(self.parents) != spec.output:
            raise GenotypeError(f"a space-{self.space} cell has {spec.nodes} nodes and an output, got "
                                f"{len(self.ops)} operations and {len(self.parents)} parent lists")
        unknown = [op for op in self.ops if op not in OPS]
        if unknown:
            raise GenotypeError(f"unknown operation(s) {unknown}; known: {list(OPS)}")
        for node, (parents, want) in enumerate(zip(self.parents, spec.parents), start=1):
            if len(parents) != want or len(set(parents)) != want or not all(0 <= p < node for p in parents):
                label = "the output" if node == spec.output else f"node {node}"
                raise GenotypeError(f"in space {self.space}, {label} takes {want} distinct parent(s) among "
                                    f"0..{node - 1}, got {list(parents)}")

    def __str__(self) -> str:
        names = [*self.ops, OUTPUT_TOKEN]
        return "|".join("~".join([name, *map(str, parents)]) for name, parents in zip(names, self.parents))

    @classmethod
    def parse(cls, text: str, space: int) -> "Genotype":
        """Parse the string form (whitespace around it ignored) for space 1, 2 or 3."""
        tokens = text.strip().split("|")
        ops, parents = [], []
        for token in tokens:
            name, *rest = token.split("~")
            try:
                parents.append(tuple(int(p) for p in rest))
            except ValueError:
                raise GenotypeError(f"malformed NAS-Bench-1Shot1 string {text!r}: bad token {token!r} "
                                    "(want op~parent~...)") from None
            ops.append(name)
        if not ops or ops[-1] != OUTPUT_TOKEN:
            raise GenotypeError(f"malformed NAS-Bench-1Shot1 string {text!r}: the last token must be "
                                f"{OUTPUT_TOKEN}~parent~...")
        return cls(space, tuple(ops[:-1]), tuple(parents))

    def nb101(self) -> tuple[np.ndarray, list[str]]:
        """The NAS-Bench-101 cell: a 7x7 0/1 adjacency matrix and 7 operations, as the 1Shot1 code builds it.

        Only the output's ancestors keep their edges (loose ends dropped). Spaces 1 and 2 (4 nodes) get an unused
        conv1x1 vertex before the output, so that the cell has NAS-Bench-101's 7 vertices.
        """
        spec = SPECS[self.space]
        size = spec.output + 1
        matrix = np.zeros((size, size), dtype=np.int64)
        stack, seen = [spec.output], set()
        while stack:
            node = stack.pop()
            if node in seen or node == 0:
                continue
            seen.add(node)
            for parent in self.parents[node - 1]:
                matrix[parent, node] = 1
                stack.append(parent)
        ops = [nb101.INPUT, *self.ops, nb101.OUTPUT]
        if size < nb101.MAX_VERTICES:
            matrix = np.insert(np.insert(matrix, spec.output, 0, axis=1), spec.output, 0, axis=0)
            ops.insert(spec.output, nb101.CONV1X1)
        return matrix, ops

    def nb101_hash(self) -> str:
        """NAS-Bench-101's graph hash of the pruned cell (equal for isomorphic cells)."""
        pruned = nb101.prune(*self.nb101())
        if pruned is None:  # cannot happen: every node descends from the input
            raise GenotypeError(f"{self} does not connect its input to its output")
        return nb101.graph_hash(*pruned)


class NodeOp(nn.Module):
    """One intermediate node's operations at `channels`, combined by the node's mixing weights."""

    def __init__(self, channels: int, ops: Sequence[str]) -> None:
        super().__init__()
        self.candidates = nn.ModuleList(NB101_OPS[name](channels) for name in ops)
        self.is_zero = (False,) * len(ops)

    def forward(self, x: torch.Tensor, weights: torch.Tensor, index: int | None = None,
                active: list[bool] | None = None) -> torch.Tensor:
        out = mix_candidates(x, self.candidates, weights, index, self.is_zero, active)
        return out if out is not None else torch.zeros_like(x)


class SearchCell(nn.Module):
    """A 1Shot1 one-shot cell: every node sees a 1x1 projection of the cell input and all earlier nodes.

    c_in: the input's channels; c: channels per node; output n*c channels (the nodes concatenated, plus the
    projected input weighted by its output weight). partial: PC-DARTS K, the share of channels through the ops.
    """

    def __init__(self, spec: SpaceSpec, c_in: int, c: int, ops: Sequence[str], partial: int = 1) -> None:
        super().__init__()
        self.spec = spec
        self.projections = nn.ModuleList(ConvBNReLU(c_in, c, 1) for _ in range(spec.nodes))
        self.output_projection = ConvBNReLU(c_in, c * spec.nodes, 1)
        self.node_ops = nn.ModuleList(NodeOp(c, ops) if partial == 1 else
                                      PartialChannels(NodeOp(c // partial, ops), c, partial, 1)
                                      for _ in range(spec.nodes))

    def forward(self, x: torch.Tensor, mixings: dict[str, Mixing]) -> torch.Tensor:
        """x: (B, c_in, H, W) -> (B, n*c, H, W)."""
        ops, output = mixings["ops"], mixings["output"].weights
        states: list[torch.Tensor] = []
        for i in range(self.spec.nodes):
            node = i + 1
            inputs = [self.projections[i](x), *states]
            if self.spec.weighted(node):
                weights = mixings[input_tensor_name(node)].weights
                inputs = [w * t for w, t in zip(weights, inputs)]
            total = inputs[0]
            for t in inputs[1:]:
                total = total + t
            index = None if ops.index is None else ops.index[i]
            active = None if ops.active is None else ops.active[i]
            states.append(self.node_ops[i](total, ops.weights[i], index, active))
        concat = torch.cat([w * s for w, s in zip(output[1:], states)], dim=1)
        return output[0] * self.output_projection(x) + concat


class Supernet(nn.Module):
    """The 1Shot1 one-shot model on NAS-Bench-101's skeleton.

    stem conv3x3-BN-ReLU (C) -> N cells -> max-pool 2x2 /2 (padding 1) -> N cells (2C) -> max-pool -> N cells (4C)
    -> ReLU-conv1x1-BN to 4C -> global average pool -> linear. All cells share one architecture.
    """

    def __init__(self, spec: SpaceSpec, channels: int = 16, cells: int = 3, num_classes: int = 10,
                 ops: Sequence[str] = OPS, partial: int = 1, in_channels: int = 3) -> None:
        super().__init__()
        self.spec = spec
        self.stem = ConvBNReLU(in_channels, channels, 3)
        layers: list[nn.Module] = []
        c_prev, c = channels, channels
        for stage in range(3):
            if stage > 0:
                layers.append(nn.MaxPool2d(2, stride=2, padding=1))
                c *= 2
            for _ in range(cells):
                layers.append(SearchCell(spec, c_prev, c, ops, partial))
                c_prev = c * spec.nodes
        self.layers = nn.ModuleList(layers)
        self.postprocess = ReLUConvBN(c_prev, c, 1, 1, 0, affine=False)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor, mixings: dict[str, Mixing]) -> torch.Tensor:
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x, mixings) if isinstance(layer, SearchCell) else layer(x)
        x = self.postprocess(x).mean(dim=(2, 3))
        return self.classifier(x)


def _partial_k(method: Any) -> int:
    return 1 if method is None else int(method.partial_channels)


def check_method(method: Any) -> None:
    """Refuse hard-sampling methods: the 1Shot1 one-shot model mixes every operation and every parent."""
    if method is not None and isinstance(method.relaxation, GumbelSampling):
        raise ConfigError(f"method {method.name!r} samples one operation per edge, which the NAS-Bench-1Shot1 "
                          "spaces do not support; use darts, gaea-darts, pcdarts or gaea-pcdarts")


def build_supernet(spec: SpaceSpec, channels: int, cells: int, num_classes: int, ops: Sequence[str] = OPS,
                   method: Any = None) -> Supernet:
    """The search-time supernet, with the method's partial channels (PC-DARTS: K=4)."""
    check_method(method)
    k = _partial_k(method)
    if channels % k:
        raise ConfigError(f"{method.name} sends 1/{k} of the channels through each node: --channels must be a "
                          f"multiple of {k}, got {channels}")
    return Supernet(spec, channels, cells, num_classes, ops, partial=k)


def arch_shapes(spec: SpaceSpec, ops: Sequence[str] = OPS, method: Any = None) -> dict[str, tuple[int, ...]]:
    """(n, k) operation weights, (m,) parent weights of each weighted node m, and (n+1,) output weights."""
    check_method(method)
    shapes: dict[str, tuple[int, ...]] = {"ops": (spec.nodes, len(ops))}
    for node in range(1, spec.output):
        if spec.weighted(node):
            shapes[input_tensor_name(node)] = (node,)
    shapes["output"] = (spec.output,)
    return shapes


def _top_parents(weights: torch.Tensor, k: int) -> tuple[int, ...]:
    """The k largest weights' indices, ascending (the first index on ties)."""
    values = weights.detach().float().cpu().tolist()
    chosen = sorted(range(len(values)), key=lambda i: (-values[i], i))[:k]
    return tuple(sorted(chosen))


def discretise(spec: SpaceSpec, probs: dict[str, torch.Tensor], ops: Sequence[str]) -> Genotype:
    """Each node's argmax operation; each weighted node's and the output's top-k parents, k from the space."""
    op_weights = probs["ops"]
    if tuple(op_weights.shape) != (spec.nodes, len(ops)):
        raise GenotypeError(f"space {spec.number} operation weights must be ({spec.nodes}, {len(ops)}), got "
                            f"{tuple(op_weights.shape)}")
    node_ops = tuple(ops[i] for i in op_weights.argmax(dim=-1).tolist())
    parents = []
    for node in range(1, spec.output + 1):
        k = spec.parents[node - 1]
        if node == spec.output:
            parents.append(_top_parents(probs["output"], k))
        elif spec.weighted(node):
            parents.append(_top_parents(probs[input_tensor_name(node)], k))
        else:
            parents.append(tuple(range(node)))
    return Genotype(spec.number, node_ops, tuple(parents))


class RegretLookup:
    """NAS-Bench-101 scores of a 1Shot1 genotype: mean test and validation accuracy (percent) at 108 epochs, and the
    test regret (test error minus the space's best, as a fraction, the paper's Figure 2)."""

    def __init__(self, table: nb101.NB101Table) -> None:
        self.table = table

    def __call__(self, genotype: Genotype) -> dict[str, float]:
        matrix, ops = genotype.nb101()
        scores = self.table.query(matrix, ops)
        test = scores["test_accuracy"]
        return {"test_accuracy": test, "validation_accuracy": scores["validation_accuracy"],
                "test_regret": (1.0 - test / 100.0) - SPECS[genotype.space].best_test_error}


def load_benchmark(path: str) -> RegretLookup:
    """The NAS-Bench-101 lookup: the official TFRecord (read once, minutes) or a compact table saved from it."""
    return RegretLookup(nb101.NB101Table.load(path))


def describe(genotype: Genotype) -> dict[str, Any]:
    """What result.json keeps beside the genotype: its NAS-Bench-101 matrix, operations and graph hash."""
    matrix, ops = genotype.nb101()
    return {"nb101": {"matrix": matrix.tolist(), "ops": ops, "hash": genotype.nb101_hash()}}
