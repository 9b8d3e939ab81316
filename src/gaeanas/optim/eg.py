"""Exponentiated gradient on products of simplices: the GAEA architecture update (Li et al., ICLR 2021)."""
from __future__ import annotations

from typing import Iterable

import torch

from ..errors import ConfigError

SIMPLEX_TOLERANCE = 1e-4  # allowed |sum - 1| of a simplex row, in probability units


@torch.no_grad()
def exponentiated_gradient_step(
    theta: torch.Tensor,
    grad: torch.Tensor,
    lr: float,
    floor: float = 1e-5,
    entropy_coef: float = 0.0,
    floor_last: bool = False,
) -> torch.Tensor:
    """Mirror-descent step with the entropy as distance-generating function, in place.

    theta: (..., k) with each row on the simplex; grad: same shape.
    theta <- theta * exp(-lr * (grad + entropy_coef * d/dtheta KL(theta || uniform))),
    then clamp to `floor` and renormalise each row; with floor_last, renormalise and then clamp, so a row may
    sum to at most 1 + (k - 1) * floor (GAEA GDAS's reference code). Returns theta.
    """
    if entropy_coef:
        # d/dtheta sum(theta * log(theta * k)) = log(theta * k) + 1
        grad = grad + entropy_coef * (torch.log(theta * theta.shape[-1]) + 1.0)
    theta.mul_(torch.exp(-lr * grad))
    if floor_last:
        theta.div_(theta.sum(dim=-1, keepdim=True))
        return theta.clamp_(min=floor)
    theta.clamp_(min=floor)
    theta.div_(theta.sum(dim=-1, keepdim=True))
    return theta


def check_on_simplex(theta: torch.Tensor, name: str = "parameter") -> None:
    """Raise ConfigError unless every row of theta's last dimension is a probability vector."""
    if theta.dim() == 0:
        raise ConfigError(f"{name} is a scalar; exponentiated gradient needs (..., k) simplex rows")
    if not torch.is_floating_point(theta):
        raise ConfigError(f"{name} must be a floating-point tensor, got {theta.dtype}")
    if bool((theta < 0).any()):
        raise ConfigError(f"{name} has negative entries; exponentiated gradient needs simplex rows")
    sums = theta.detach().double().sum(dim=-1)
    worst = float((sums - 1).abs().max())
    if worst > SIMPLEX_TOLERANCE:
        raise ConfigError(f"{name} rows are not normalised along the last dimension (max |sum-1| = {worst:.3g})")


class SimplexOptimizer(torch.optim.Optimizer):
    """An update of simplex rows, parameter by parameter: subclasses implement update(p, grad, group)."""

    def update(self, p: torch.Tensor, grad: torch.Tensor, group: dict) -> None:
        raise NotImplementedError

    def start_group(self, group: dict) -> None:
        """Called once per group and step, before its parameters' updates."""

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        """One update of every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            self.start_group(group)
            for p in group["params"]:
                if p.grad is not None:
                    self.update(p, p.grad.to(p.dtype), group)
        return loss


class ExponentiatedGradient(SimplexOptimizer):
    """Exponentiated gradient (entropic mirror descent) over the last dimension of each parameter.

    Args:
        params: tensors whose last dimension holds simplices (rows >= 0 summing to 1).
        lr: step size (dimensionless; multiplies the raw gradient inside exp). GAEA uses 0.1
            for DARTS/PC-DARTS and 0.01 for GDAS.
        floor: entries are clamped to at least this before renormalising (reference code: 1e-5),
            so no weight reaches zero and every operation can recover.
        entropy_coef: coefficient of the regulariser sum(theta * log(theta * k)) = KL(theta || uniform)
            added to the loss (0 disables it).
        floor_last: renormalise first, then clamp to the floor (GAEA GDAS's reference code).

    Gradient clipping is the caller's (the search step clips the architecture gradient once, for every method).
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict],
        lr: float = 0.1,
        floor: float = 1e-5,
        entropy_coef: float = 0.0,
        floor_last: bool = False,
    ) -> None:
        if not lr > 0:
            raise ConfigError(f"learning rate must be > 0, got {lr}")
        if not 0 <= floor < 1:
            raise ConfigError(f"floor must be in [0, 1), got {floor}")
        if entropy_coef < 0:
            raise ConfigError(f"entropy_coef must be >= 0, got {entropy_coef}")
        defaults = dict(lr=lr, floor=floor, entropy_coef=entropy_coef, floor_last=floor_last)
        super().__init__(params, defaults)
        for group in self.param_groups:
            if not group["lr"] > 0:
                raise ConfigError(f"learning rate must be > 0, got {group['lr']}")
            for i, p in enumerate(group["params"]):
                check_on_simplex(p, f"parameter {i}")

    def update(self, p: torch.Tensor, grad: torch.Tensor, group: dict) -> None:
        exponentiated_gradient_step(p, grad, group["lr"], group["floor"], group["entropy_coef"],
                                    group.get("floor_last", False))
