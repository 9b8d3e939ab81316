"""Named search recipes: DARTS, GDAS, PC-DARTS (Liu 2019; Dong & Yang 2019; Xu 2020) and GAEA versions (Li 2021)."""
from __future__ import annotations

from dataclasses import dataclass, field

from .errors import ConfigError


@dataclass(frozen=True)
class Method:
    """How architecture weights are parametrised, mixed and updated.

    parametrisation: "logits" (softmax of free parameters) or "simplex" (the weights themselves).
    relaxation: "mixture" (all ops, weighted) or "gumbel" (one sampled op per edge per step).
    optimizer / arch_lr / optimizer_kwargs: the architecture optimizer (see gaeanas.optim).
    partial_channels: K of PC-DARTS: only 1/K of the channels go through the mixed op (1: all of them).
    edge_norm: PC-DARTS edge normalisation: a learned weight for each incoming edge of a node.
    defaults: SearchConfig fields this method sets unless given (e.g. warmup_epochs).
    """

    name: str
    parametrisation: str
    relaxation: str
    optimizer: str
    arch_lr: float
    optimizer_kwargs: dict = field(default_factory=dict)
    description: str = ""
    partial_channels: int = 1
    edge_norm: bool = False
    defaults: dict = field(default_factory=dict)


_ADAM = {"betas": (0.5, 0.999), "weight_decay": 1e-3}

METHODS: dict[str, Method] = {m.name: m for m in (
    Method("darts", "logits", "mixture", "adam", 3e-4, _ADAM,
           "first-order DARTS: softmax over logits, Adam"),
    Method("gaea-darts", "simplex", "mixture", "eg", 0.1, {},
           "GAEA DARTS: weights on the simplex, exponentiated gradient"),
    Method("gdas", "logits", "gumbel", "adam", 3e-4, _ADAM,
           "GDAS: Gumbel straight-through hard sampling from softmax logits, Adam"),
    Method("gaea-gdas", "simplex", "gumbel", "eg", 0.01, {},
           "GAEA GDAS: Gumbel hard sampling from log(theta) on the simplex, exponentiated gradient"),
    Method("pcdarts", "logits", "mixture", "adam", 6e-4, _ADAM,
           "PC-DARTS: 1/4 of the channels through each edge, softmax edge weights per node, Adam",
           partial_channels=4, edge_norm=True, defaults={"warmup_epochs": 15}),
    Method("gaea-pcdarts", "simplex", "mixture", "eg", 0.1, {},
           "GAEA PC-DARTS: PC-DARTS with op and edge weights on simplices, exponentiated gradient",
           partial_channels=4, edge_norm=True, defaults={"warmup_epochs": 10}),
)}


def get_method(name: str) -> Method:
    """Look up a registered method."""
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; known: {sorted(METHODS)}")
    return METHODS[name]
