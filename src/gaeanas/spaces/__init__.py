"""Search spaces by name (the SearchSpace contract), and the search model that joins a supernet to its weights."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Protocol, Sequence

import torch
from torch import nn

from ..errors import ConfigError
from ..relax import Architecture, Relaxation
from . import darts, nb1shot1, nb201
from .darts_genotypes import Genotype as DartsGenotype


class SearchSpace(Protocol):
    """What a search space provides; registering one in SPACES runs the contract tests on it.

    name, ops: its name and candidate operations, in the architecture tensors' column order.
    defaults: SearchConfig fields it sets unless given (channels, cells, objective, epochs, batch_size, lr, lr_min,
        lr_cycle, weight_decay, nesterov, update_order); a method's recipe for the space overrides them.
    settings: SearchConfig fields only this space reads (e.g. nb201's `benchmark`); refused in other spaces.
    check_method(method): raise ConfigError if the method's supernet shape does not fit the space.
    build_supernet(channels, cells, num_classes, ops, method): the supernet; forward(x, {name: Mixing}).
    arch_shapes(ops, method): {tensor name: shape (..., k)}, one row per decision.
    discretise({name: probs}, ops): the genotype the weights select; str(genotype) round-trips via parse_genotype.
    min_image_size: pixels; the smallest image side the supernet's reductions can take.
    activation_factor: the supernet's forward outputs per image, per (channel x cell x op x pixel): its
        activation memory is about batch x factor x C x N x ops x H x W numbers (measured on the meta device).
    load_benchmark(path): for a space with `benchmark` in its settings, the lookup genotype -> {name: score} that
        each epoch's log keeps as "oracle".
    describe(genotype): what result.json keeps beside a genotype (e.g. its NAS-Bench-101 cell); {} by default.
    """

    name: str
    ops: tuple[str, ...]
    defaults: dict[str, Any]
    settings: frozenset[str]
    min_image_size: int
    activation_factor: float

    def check_method(self, method: Any) -> None: ...
    def build_supernet(self, channels: int, cells: int, num_classes: int, ops: Sequence[str], method: Any
                       ) -> nn.Module: ...
    def arch_shapes(self, ops: Sequence[str], method: Any) -> dict[str, tuple[int, ...]]: ...
    def discretise(self, probs: dict[str, torch.Tensor], ops: Sequence[str]) -> Any: ...
    def parse_genotype(self, text: str) -> Any: ...
    def load_benchmark(self, path: str) -> Callable[[Any], dict[str, float]]: ...
    def describe(self, genotype: Any) -> dict[str, Any]: ...


def _no_benchmark(path: str) -> Callable[[Any], dict[str, float]]:
    raise ConfigError("this space has no benchmark table")


def _nb201_lookup(path: str) -> Callable[[Any], dict[str, float]]:
    from ..nasbench import NB201Table  # nasbench reads the space's genotypes: imported when used

    return NB201Table.load(path).query


@dataclass(frozen=True)
class RegisteredSpace:
    """A SearchSpace made of a space module's functions."""

    name: str
    ops: tuple[str, ...]
    check_method: Callable[[Any], None]
    build_supernet: Callable[..., nn.Module]
    arch_shapes: Callable[[Sequence[str], Any], dict[str, tuple[int, ...]]]
    discretise: Callable[[dict[str, torch.Tensor], Sequence[str]], Any]
    parse_genotype: Callable[[str], Any]
    defaults: dict[str, Any] = field(default_factory=dict)
    settings: frozenset[str] = frozenset()
    min_image_size: int = 1
    activation_factor: float = 4.0
    load_benchmark: Callable[[str], Callable[[Any], dict[str, float]]] = _no_benchmark
    describe: Callable[[Any], dict[str, Any]] = lambda genotype: {}


def _parse_1shot1(text: str, space: int) -> nb1shot1.Genotype:
    return nb1shot1.Genotype.parse(text, space)


# The GAEA code's weight update in every space (cnn/train_search.py, configs/cnn/mode/*.yaml).
_REFERENCE_WEIGHT_UPDATE = {"weight_decay": 3e-4, "nesterov": False, "update_order": "arch-first"}

SPACES: dict[str, SearchSpace] = {
    "nb201": RegisteredSpace(
        name="nb201", ops=nb201.OPS, check_method=nb201.check_method,
        build_supernet=nb201.build_supernet, arch_shapes=nb201.arch_shapes, discretise=nb201.discretise,
        parse_genotype=nb201.Genotype.parse,
        # The GAEA paper's appendix C.3, and the GAEA code's 50-epoch cosine cycle (C: the code uses 24).
        defaults={"channels": 16, "cells": 5, "objective": "erm", "epochs": 25, "batch_size": 64,
                  "lr": 0.025, "lr_min": 0.001, "lr_cycle": 50, **_REFERENCE_WEIGHT_UPDATE},
        settings=frozenset({"benchmark"}), min_image_size=3, activation_factor=4.0, load_benchmark=_nb201_lookup),
    "darts": RegisteredSpace(
        name="darts", ops=darts.OPS, check_method=darts.check_method,
        build_supernet=darts.build_supernet, arch_shapes=darts.arch_shapes, discretise=darts.discretise,
        parse_genotype=DartsGenotype.parse,
        # The GAEA paper's appendix C.1.1 (PC-DARTS / GAEA PC-DARTS search).
        defaults={"channels": 16, "cells": 8, "objective": "bilevel", "epochs": 50, "batch_size": 256,
                  "lr": 0.1, "lr_min": 0.0, "lr_cycle": 50, **_REFERENCE_WEIGHT_UPDATE},
        activation_factor=2.0),
    **{name: RegisteredSpace(
        name=name, ops=nb1shot1.OPS, check_method=nb1shot1.check_method,
        build_supernet=partial(nb1shot1.build_supernet, spec), arch_shapes=partial(nb1shot1.arch_shapes, spec),
        discretise=partial(nb1shot1.discretise, spec), parse_genotype=partial(_parse_1shot1, space=n),
        # The 1Shot1 code's searches (optimizers/{darts,pc_darts}/train_search.py): 9 cells (3 per stage), batch 96,
        # one cosine over the run, the held-out half for the architecture, the last epoch's cell; 50 epochs as its
        # DARTS and GAEA's 1Shot1 figures (its PC-DARTS script defaults to 100). docs/parity.md has each value.
        defaults={"channels": 16, "cells": 3, "objective": "bilevel", "epochs": 50, "batch_size": 96,
                  "lr": 0.025, "lr_min": 0.001, "lr_cycle": 0, "select": "last", **_REFERENCE_WEIGHT_UPDATE},
        settings=frozenset({"benchmark"}), activation_factor=40.0, load_benchmark=nb1shot1.load_benchmark,
        describe=nb1shot1.describe)
       for name, (n, spec) in zip(nb1shot1.SPACE_NAMES, nb1shot1.SPECS.items())},
}


def get_space(name: str) -> SearchSpace:
    """Look up a registered search space."""
    if name not in SPACES:
        raise ConfigError(f"unknown search space {name!r}; known: {sorted(SPACES)}")
    return SPACES[name]


def space_settings() -> frozenset[str]:
    """The SearchConfig fields that belong to some space: each is refused in a space that does not read it."""
    return frozenset().union(*(space.settings for space in SPACES.values()))


def supernet_bytes(space: SearchSpace, channels: int, cells: int, n_ops: int, image_size: tuple[int, int],
                   batch_size: int, parameters: int) -> int:
    """About how much memory a search step takes, in bytes: fp32 activations kept for the backward pass (twice
    the forward outputs, see activation_factor) and the weights with their gradients and momentum (x3)."""
    height, width = image_size
    activations = batch_size * space.activation_factor * channels * cells * n_ops * height * width
    return int(4 * (2 * activations + 3 * parameters))


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
