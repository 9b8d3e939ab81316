"""Architecture optimizers: exponentiated gradient (GAEA) and the baselines' Adam, by name."""
from __future__ import annotations

from typing import Callable, Iterable

import torch

from ..errors import ConfigError
from .eg import ExponentiatedGradient, check_on_simplex, exponentiated_gradient_step

__all__ = ["ExponentiatedGradient", "exponentiated_gradient_step", "check_on_simplex",
           "ARCH_OPTIMIZERS", "create_arch_optimizer"]


def _adam(params: Iterable[torch.Tensor], lr: float, weight_decay: float = 1e-3,
          betas: tuple[float, float] = (0.5, 0.999), **_: object) -> torch.optim.Optimizer:
    """Adam as DARTS/GDAS use it on architecture logits."""
    return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=weight_decay)


def _eg(params: Iterable[torch.Tensor], lr: float, floor: float = 1e-5, entropy_coef: float = 0.0,
        max_grad_norm: float | None = None, **_: object) -> torch.optim.Optimizer:
    """Exponentiated gradient on simplex parameters."""
    return ExponentiatedGradient(params, lr=lr, floor=floor, entropy_coef=entropy_coef,
                                 max_grad_norm=max_grad_norm)


ARCH_OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {"adam": _adam, "eg": _eg}


def create_arch_optimizer(name: str, params: Iterable[torch.Tensor], **kwargs: object) -> torch.optim.Optimizer:
    """Build a registered architecture optimizer by name."""
    if name not in ARCH_OPTIMIZERS:
        raise ConfigError(f"unknown architecture optimizer {name!r}; known: {sorted(ARCH_OPTIMIZERS)}")
    return ARCH_OPTIMIZERS[name](params, **kwargs)
