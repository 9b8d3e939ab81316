"""Search spaces by name, and the search model that joins a supernet to its architecture parameters."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..errors import ConfigError
from ..relax import Architecture, Relaxation
from . import darts, nb201
from .darts_genotypes import Genotype as DartsGenotype


@dataclass(frozen=True)
class SearchSpace:
    """What the search loop needs to know about a space."""

    name: str
    ops: tuple[str, ...]                                        # candidate operations, in column order
    build_supernet: Callable[..., nn.Module]                    # (channels, cells, num_classes, ops, method)
    arch_shapes: Callable[[Sequence[str], Any], dict[str, tuple[int, ...]]]  # (ops, method)
    discretise: Callable[[dict[str, torch.Tensor], Sequence[str]], Any]
    parse_genotype: Callable[[str], Any]
    defaults: dict[str, Any] = field(default_factory=dict)     # SearchConfig fields: channels, cells, epochs, ...


SPACES: dict[str, SearchSpace] = {
    "nb201": SearchSpace(
        name="nb201", ops=nb201.OPS,
        build_supernet=nb201.build_supernet, arch_shapes=nb201.arch_shapes, discretise=nb201.discretise,
        parse_genotype=nb201.Genotype.parse,
        # The GAEA paper's appendix C.3.
        defaults={"channels": 16, "cells": 5, "objective": "erm", "epochs": 25, "batch_size": 64,
                  "lr": 0.025, "lr_min": 0.001}),
    "darts": SearchSpace(
        name="darts", ops=darts.OPS,
        build_supernet=darts.build_supernet, arch_shapes=darts.arch_shapes, discretise=darts.discretise,
        parse_genotype=DartsGenotype.parse,
        # The GAEA paper's appendix C.1.1 (PC-DARTS / GAEA PC-DARTS search).
        defaults={"channels": 16, "cells": 8, "objective": "bilevel", "epochs": 50, "batch_size": 256,
                  "lr": 0.1, "lr_min": 0.0}),
}


def get_space(name: str) -> SearchSpace:
    """Look up a registered search space."""
    if name not in SPACES:
        raise ConfigError(f"unknown search space {name!r}; known: {sorted(SPACES)}")
    return SPACES[name]


def candidate_ops(space: SearchSpace, exclude_none: bool) -> tuple[str, ...]:
    """The space's operations, without `none` when excluded (the paper's 'exclude zero')."""
    return tuple(op for op in space.ops if not (exclude_none and op == "none"))


class SearchModel(nn.Module):
    """A supernet, its architecture parameters and the relaxation that mixes them, as one module."""

    def __init__(self, space: SearchSpace, net: nn.Module, arch: Architecture, relax: Relaxation,
                 ops: Sequence[str]) -> None:
        super().__init__()
        self.space, self.net, self.arch, self.relax = space, net, arch, relax
        self.ops = tuple(ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixings = {name: self.relax(self.arch, name) for name in self.arch.theta}
        return self.net(x, mixings)

    def weight_parameters(self) -> list[nn.Parameter]:
        return list(self.net.parameters())

    def arch_parameters(self) -> list[nn.Parameter]:
        return list(self.arch.parameters())

    @torch.no_grad()
    def genotype(self) -> Any:
        """The discrete architecture the current weights select."""
        probs = {name: self.arch.probs(name).float().cpu() for name in self.arch.theta}
        return self.space.discretise(probs, self.ops)
