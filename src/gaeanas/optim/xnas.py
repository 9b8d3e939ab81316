"""Prediction with expert advice on each simplex row, with XNAS' wipeout (Nayman et al., NeurIPS 2019).

Each row's operations are experts. The update is exponentiated gradient (the same as GAEA's, without a floor), and
after it the wipeout rule zeroes every expert that can no longer overtake the row's best within the steps left: with
per-step gradients bounded by L (XNAS clips them), an expert's log-weight can gain at most 2 * lr * L per step on the
best one, so an expert with log(theta_max) - log(theta_i) > 2 * lr * L * (T - t) is out for good.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch

from ..errors import ConfigError
from .eg import SimplexOptimizer, check_on_simplex


@torch.no_grad()
def expert_advice_step(theta: torch.Tensor, grad: torch.Tensor, lr: float, wipeout_gap: float | None) -> torch.Tensor:
    """theta <- theta * exp(-lr * grad), renormalised per row, in place; then, when wipeout_gap is given, every entry
    whose log-weight trails its row's best by more than wipeout_gap is set to 0 (and the row renormalised).
    Returns theta."""
    log_theta = torch.log(theta) - lr * grad  # wiped entries stay at -inf
    log_theta = log_theta - torch.logsumexp(log_theta, dim=-1, keepdim=True)
    if wipeout_gap is not None:
        best = log_theta.max(dim=-1, keepdim=True).values
        log_theta = torch.where(best - log_theta > wipeout_gap, torch.full_like(log_theta, -math.inf), log_theta)
        log_theta = log_theta - torch.logsumexp(log_theta, dim=-1, keepdim=True)
    return theta.copy_(torch.exp(log_theta))


class ExpertAdvice(SimplexOptimizer):
    """XNAS' architecture update over the last dimension of each parameter (rows on the simplex).

    Args:
        params: tensors whose last dimension holds simplices.
        lr: step size (dimensionless, as exponentiated gradient's).
        grad_bound: L, the bound on each step's gradient that the caller enforces (XNAS clips per example); the
            wipeout's pace. 0 turns the wipeout off.
    The wipeout needs the horizon T, the number of steps the search will take: `set_horizon(T)` before the first
    step (until then nothing is wiped out). The steps taken and the horizon are in the state dict.
    """

    def __init__(self, params: Iterable[torch.Tensor] | Iterable[dict], lr: float = 0.1, grad_bound: float = 5.0
                 ) -> None:
        if not lr > 0:
            raise ConfigError(f"learning rate must be > 0, got {lr}")
        if grad_bound < 0:
            raise ConfigError(f"grad_bound must be >= 0, got {grad_bound}")
        super().__init__(params, dict(lr=lr, grad_bound=grad_bound, horizon=0, steps=0))
        for group in self.param_groups:
            for i, p in enumerate(group["params"]):
                check_on_simplex(p, f"parameter {i}")

    def set_horizon(self, steps: int) -> None:
        """The number of steps the search takes in all (T of the wipeout rule)."""
        for group in self.param_groups:
            group["horizon"] = int(steps)

    def start_group(self, group: dict) -> None:
        """Count the step; the wipeout's gap for the steps left (None: no wipeout yet, or none asked for)."""
        group["steps"] += 1
        left = group["horizon"] - group["steps"]
        group["gap"] = 2.0 * group["lr"] * group["grad_bound"] * left if group["horizon"] and group["grad_bound"] \
            else None

    def update(self, p: torch.Tensor, grad: torch.Tensor, group: dict) -> None:
        expert_advice_step(p, grad, group["lr"], group["gap"])
