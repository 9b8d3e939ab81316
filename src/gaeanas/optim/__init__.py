"""Architecture optimizers by name: exponentiated gradient (GAEA), expert advice with wipeout (XNAS) and the
baselines' Adam, timm-style registry."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import torch

from ..errors import ConfigError
from .eg import ExponentiatedGradient, check_on_simplex, exponentiated_gradient_step
from .xnas import ExpertAdvice, expert_advice_step

__all__ = ["ExponentiatedGradient", "exponentiated_gradient_step", "check_on_simplex", "ExpertAdvice",
           "expert_advice_step", "OptimInfo",
           "ARCH_OPTIMIZERS", "create_arch_optimizer"]


@dataclass(frozen=True)
class OptimInfo:
    """A registry entry: the optimizer class, the keyword arguments it accepts, and their defaults here."""

    name: str
    cls: type[torch.optim.Optimizer]
    parametrisation: str  # what the parameters hold: "logits" or "simplex" (rows on the simplex)
    accepts: tuple[str, ...]
    defaults: dict[str, Any] = field(default_factory=dict)


ARCH_OPTIMIZERS: dict[str, OptimInfo] = {info.name: info for info in (
    # Adam as DARTS/GDAS use it on architecture logits.
    OptimInfo("adam", torch.optim.Adam, "logits", ("lr", "betas", "weight_decay"),
              {"betas": (0.5, 0.999), "weight_decay": 1e-3}),
    OptimInfo("eg", ExponentiatedGradient, "simplex", ("lr", "floor", "entropy_coef", "floor_last"),
              {"floor": 1e-5, "entropy_coef": 0.0, "floor_last": False}),
    # XNAS: expert advice with the wipeout; grad_bound is L, the per-example clip the search step applies.
    OptimInfo("xnas", ExpertAdvice, "simplex", ("lr", "grad_bound"), {"grad_bound": 5.0}),
)}


def create_arch_optimizer(name: str, params: Iterable[torch.Tensor] | Iterable[dict], **kwargs: Any) -> torch.optim.Optimizer:
    """Build a registered architecture optimizer; an argument it does not accept is an error, not ignored."""
    if name not in ARCH_OPTIMIZERS:
        raise ConfigError(f"unknown architecture optimizer {name!r}; known: {sorted(ARCH_OPTIMIZERS)}")
    info = ARCH_OPTIMIZERS[name]
    unknown = sorted(set(kwargs) - set(info.accepts))
    if unknown:
        raise ConfigError(f"architecture optimizer {name!r} does not take {unknown}; it takes {list(info.accepts)}")
    return info.cls(params, **{**info.defaults, **kwargs})
