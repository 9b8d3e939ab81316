"""Search methods as recipe objects: DARTS, GDAS, PC-DARTS, XNAS (Liu 2019; Dong & Yang 2019; Xu 2020; Nayman 2019)
and GAEA (Li 2021).

A method is made of parts, each of which states the SearchConfig settings it reads and its defaults:
- an architecture update (ArchUpdate): how the weights are parametrised and which optimizer moves them;
- a relaxation recipe (RelaxationRecipe): how the weights mix candidate operations, and its per-epoch schedule;
- the supernet's shape: PC-DARTS partial channels and edge normalisation;
- a warm-up: epochs of weight training before the architecture learns;
- per-space recipes: what the reference code ran in each space where it differs from the space's defaults
  (epochs, weight decay, update order, ...); docs/parity.md lists every value beside the paper's text.
The search loop only calls a method's hooks (build_relaxation, build_arch_optimizer, on_epoch_start), so a
method made of existing parts is one registry entry, and a new kind of update is one new ArchUpdate class.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

import torch

from .errors import ConfigError
from .optim import create_arch_optimizer
from .relax import Architecture, GumbelHard, Mixture, Relaxation

class ArchUpdate(ABC):
    """How architecture weights are parametrised ("logits" or "simplex") and updated."""

    parametrisation: ClassVar[str]

    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """The SearchConfig fields this update reads, with this recipe's defaults."""

    @abstractmethod
    def build(self, arch: Architecture, cfg: Any) -> torch.optim.Optimizer:
        """The optimizer for the architecture's tensors, from a resolved config."""


@dataclass(frozen=True)
class AdamOnLogits(ArchUpdate):
    """DARTS / GDAS: Adam on free logits behind a softmax. lr in logit units per step; weight decay is L2."""

    lr: float = 3e-4
    weight_decay: float = 1e-3
    betas: tuple[float, float] = (0.5, 0.999)
    parametrisation: ClassVar[str] = "logits"

    def settings(self) -> dict[str, Any]:
        return {"arch_lr": self.lr, "arch_weight_decay": self.weight_decay}

    def build(self, arch: Architecture, cfg: Any) -> torch.optim.Optimizer:
        return create_arch_optimizer("adam", arch.parameters(), lr=cfg.arch_lr, betas=self.betas,
                                     weight_decay=cfg.arch_weight_decay)


@dataclass(frozen=True)
class ExponentiatedGradientOnSimplex(ArchUpdate):
    """GAEA: the weights live on simplices and move by exponentiated gradient (dimensionless step size).

    The floor and the entropic regulariser act on the operation weights. Per-node edge weights (PC-DARTS' beta)
    are only renormalised, with no floor and no regulariser, as in the reference code.
    floor_last: renormalise, then clamp to the floor (GAEA GDAS's reference code), instead of the reverse.
    """

    lr: float = 0.1
    floor: float = 1e-5
    entropy_coef: float = 0.0
    floor_last: bool = False
    parametrisation: ClassVar[str] = "simplex"

    def settings(self) -> dict[str, Any]:
        return {"arch_lr": self.lr, "eg_floor": self.floor, "entropy_coef": self.entropy_coef,
                "eg_floor_last": self.floor_last}

    def build(self, arch: Architecture, cfg: Any) -> torch.optim.Optimizer:
        groups = [{"params": [arch.theta[name] for name in arch.op_names]}]
        if arch.edge_names:
            groups.append({"params": [arch.theta[name] for name in arch.edge_names], "floor": 0.0,
                           "entropy_coef": 0.0, "floor_last": False})
        return create_arch_optimizer("eg", groups, lr=cfg.arch_lr, floor=cfg.eg_floor, entropy_coef=cfg.entropy_coef,
                                     floor_last=cfg.eg_floor_last)


@dataclass(frozen=True)
class ExpertAdviceOnSimplex(ArchUpdate):
    """XNAS (Nayman et al., 2019) as GAEA's appendix C.4 sets it against GAEA: the same exponentiated gradient on the
    simplex, with two differences: each example's architecture gradient is clipped to norm L (`example_clip`) before
    the batch average, and the wipeout zeroes operations that can no longer overtake their edge's best in the steps
    left (optim.xnas). No floor, so a wiped-out operation stays out.

    The step size defaults to GAEA's 0.1, so that the comparison isolates those two differences; XNAS' theory sets
    sqrt(2 ln k / T) / L for k operations and T steps, one --arch-lr away.
    """

    lr: float = 0.1
    example_clip: float = 5.0
    parametrisation: ClassVar[str] = "simplex"
    per_example: ClassVar[bool] = True

    def settings(self) -> dict[str, Any]:
        return {"arch_lr": self.lr, "example_clip": self.example_clip}

    def build(self, arch: Architecture, cfg: Any) -> torch.optim.Optimizer:
        return create_arch_optimizer("xnas", arch.parameters(), lr=cfg.arch_lr, grad_bound=cfg.example_clip)


class RelaxationRecipe(ABC):
    """How architecture weights mix candidate operations, and how that changes from epoch to epoch."""

    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """The SearchConfig fields this relaxation reads, with this recipe's defaults."""

    @abstractmethod
    def build(self, cfg: Any, generator: torch.Generator | None) -> Relaxation:
        """The relaxation for a resolved config; `generator` feeds any sampling."""

    def on_epoch_start(self, relaxation: Relaxation, cfg: Any, epoch: int) -> dict[str, float]:
        """Set this epoch's schedule on `relaxation`; return the values to log (none by default)."""
        return {}


@dataclass(frozen=True)
class SoftMixture(RelaxationRecipe):
    """DARTS' continuous relaxation: every op runs, weighted; optional sparse skipping of small weights."""

    def settings(self) -> dict[str, Any]:
        return {"sparse_skip": 0.0}

    def build(self, cfg: Any, generator: torch.Generator | None) -> Relaxation:
        return Mixture(threshold=cfg.sparse_skip)


@dataclass(frozen=True)
class DenseMixture(RelaxationRecipe):
    """The soft mixture with every op always run: XNAS' per-example architecture step mixes each example's own
    weights, so there is no sparse skipping to set."""

    def settings(self) -> dict[str, Any]:
        return {}

    def build(self, cfg: Any, generator: torch.Generator | None) -> Relaxation:
        return Mixture()


def gumbel_temperature(tau_max: float, tau_min: float, epoch: int, epochs: int, warmup: int = 0) -> float:
    """tau_max until the warm-up ends, then down by (tau_max - tau_min) / (epochs - 1) an epoch.

    Without a warm-up it reaches tau_min at the last epoch (GDAS). With one it stops short of tau_min, as GAEA
    GDAS's reference code does: tau = tau_max - (tau_max - tau_min) * max(epoch - warmup, 0) / (epochs - 1).
    """
    return tau_max - (tau_max - tau_min) * max(epoch - warmup, 0) / max(epochs - 1, 1)


@dataclass(frozen=True)
class GumbelSampling(RelaxationRecipe):
    """GDAS: one op per edge drawn by Gumbel-max, temperature annealed linearly after the warm-up (see
    gumbel_temperature)."""

    tau_max: float = 10.0
    tau_min: float = 0.1

    def settings(self) -> dict[str, Any]:
        return {"tau_max": self.tau_max, "tau_min": self.tau_min}

    def build(self, cfg: Any, generator: torch.Generator | None) -> Relaxation:
        return GumbelHard(tau=cfg.tau_max, generator=generator)

    def on_epoch_start(self, relaxation: Relaxation, cfg: Any, epoch: int) -> dict[str, float]:
        relaxation.tau = gumbel_temperature(cfg.tau_max, cfg.tau_min, epoch, cfg.epochs,  # type: ignore[attr-defined]
                                            cfg.warmup_epochs)
        return {"tau": relaxation.tau}  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Method:
    """A registered search method: its parts and its supernet shape.

    partial_channels: K of PC-DARTS: only 1/K of the channels go through the mixed op (1: all of them).
    edge_norm: PC-DARTS edge normalisation: a learned weight for each incoming edge of a node.
    warmup_epochs: default epochs of weight training before the architecture starts to learn.
    recipes: per space, the settings the reference code ran with where they differ from the space's defaults.
    """

    name: str
    description: str
    update: ArchUpdate
    relaxation: RelaxationRecipe
    partial_channels: int = 1
    edge_norm: bool = False
    warmup_epochs: int = 0
    recipes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def parametrisation(self) -> str:
        return self.update.parametrisation

    @property
    def per_example(self) -> bool:
        """Whether the architecture step needs each example's gradient (XNAS' per-example clipping)."""
        return bool(getattr(self.update, "per_example", False))

    def settings(self) -> dict[str, Any]:
        """Every SearchConfig field this method reads, with its defaults."""
        return {"warmup_epochs": self.warmup_epochs, **self.update.settings(), **self.relaxation.settings()}

    def build_relaxation(self, cfg: Any, generator: torch.Generator | None = None) -> Relaxation:
        return self.relaxation.build(cfg, generator)

    def recipe(self, space: str) -> dict[str, Any]:
        """The reference code's settings for this method in `space` that differ from the space's defaults."""
        return dict(self.recipes.get(space, {}))

    def build_arch_optimizer(self, cfg: Any, arch: Architecture) -> torch.optim.Optimizer:
        return self.update.build(arch, cfg)

    def on_epoch_start(self, relaxation: Relaxation, cfg: Any, epoch: int) -> dict[str, float]:
        """Apply the per-epoch schedule; returns the scheduled values, for the epoch's log record."""
        return self.relaxation.on_epoch_start(relaxation, cfg, epoch)


_ADAM, _EG = AdamOnLogits(lr=3e-4), ExponentiatedGradientOnSimplex(lr=0.1)
# GAEA GDAS's released config (configs/cnn/search_method/egdas/method_egdas_space_nasbench201.yaml): step 0.01,
# entropic regulariser 0.01 (its `arch_weight_decay`); architect_egdas.py floors after renormalising.
_EG_GDAS = ExponentiatedGradientOnSimplex(lr=0.01, entropy_coef=0.01, floor_last=True)
# First-order DARTS' own weight recipe on its space (DARTS paper; GAEA appendix C.1.1), not PC-DARTS' batch 256.
_DARTS_SPACE = {"batch_size": 64, "lr": 0.025, "lr_min": 0.001}
# spaces.nb1shot1.SPACE_NAMES (spaces import this module, so the names are spelled out here; a test checks they agree)
_1SHOT1_SPACES = tuple(f"nb1shot1-s{n}" for n in (1, 2, 3))
# The 1Shot1 code's PC-DARTS (optimizers/pc_darts/train_search.py): DARTS' arch step 3e-4, no warm-up; GAEA's
# appendix C.2: GAEA PC-DARTS there is the same with exponentiated gradient at 0.1.
_PCDARTS_1SHOT1 = {space: {"arch_lr": 3e-4, "warmup_epochs": 0} for space in _1SHOT1_SPACES}
_GAEA_PCDARTS_1SHOT1 = {space: {"warmup_epochs": 0} for space in _1SHOT1_SPACES}

METHODS: dict[str, Method] = {m.name: m for m in (
    Method("darts", "first-order DARTS: softmax over logits, Adam", _ADAM, SoftMixture(),
           recipes={"darts": _DARTS_SPACE}),
    Method("gaea-darts", "GAEA DARTS: weights on the simplex, exponentiated gradient", _EG, SoftMixture(),
           recipes={"darts": _DARTS_SPACE}),
    # AutoDL-Projects' GDAS on NAS-Bench-201 (exps/algos/GDAS.py, configs/nas-benchmark/algos/GDAS.config).
    Method("gdas", "GDAS: Gumbel straight-through hard sampling from softmax logits, Adam", _ADAM, GumbelSampling(),
           recipes={"nb201": {"epochs": 250, "weight_decay": 5e-4, "nesterov": True, "lr_cycle": 0,
                              "update_order": "weights-first", "select": "last"}}),
    Method("gaea-gdas", "GAEA GDAS: Gumbel hard sampling from log(theta) on the simplex, exponentiated gradient",
           _EG_GDAS, GumbelSampling(),
           # the reference ran it on NB-201 only; on the DARTS space the same shape: warm-up a third of the run
           recipes={"nb201": {"epochs": 150, "warmup_epochs": 50}, "darts": {"warmup_epochs": 17}}),
    Method("pcdarts", "PC-DARTS: 1/4 of the channels through each edge, softmax edge weights per node, Adam",
           AdamOnLogits(lr=6e-4), SoftMixture(), partial_channels=4, edge_norm=True, warmup_epochs=15,
           recipes=_PCDARTS_1SHOT1),
    Method("xnas", "XNAS: expert advice on the simplex with per-example gradient clipping and wipeout",
           ExpertAdviceOnSimplex(), DenseMixture()),
    Method("gaea-pcdarts", "GAEA PC-DARTS: PC-DARTS with op and edge weights on simplices, exponentiated gradient",
           _EG, SoftMixture(), partial_channels=4, edge_norm=True, warmup_epochs=10, recipes=_GAEA_PCDARTS_1SHOT1),
)}


def method_settings() -> frozenset[str]:
    """The SearchConfig fields that belong to methods: each is refused under a method that does not read it."""
    return frozenset(name for m in METHODS.values() for name in m.settings())


def get_method(name: str) -> Method:
    """Look up a registered method."""
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; known: {sorted(METHODS)}")
    return METHODS[name]


__all__ = ["ArchUpdate", "AdamOnLogits", "ExponentiatedGradientOnSimplex", "ExpertAdviceOnSimplex", "RelaxationRecipe",
           "SoftMixture", "DenseMixture",
           "GumbelSampling", "Method", "METHODS", "get_method", "method_settings", "gumbel_temperature"]
