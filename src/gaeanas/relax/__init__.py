"""How architecture weights mix candidate operations: soft mixture or Gumbel hard sampling, by name."""
from __future__ import annotations

from typing import NamedTuple, Protocol

import torch

from ..errors import ConfigError
from .arch import PARAMETRISATIONS, Architecture


class Mixing(NamedTuple):
    """What a supernet edge needs: weights (..., k), and for hard sampling the chosen op per row."""

    weights: torch.Tensor
    index: list | None = None


class Relaxation(Protocol):
    def __call__(self, arch: Architecture, name: str) -> Mixing: ...


class Mixture:
    """DARTS' continuous relaxation: every op runs, weighted by the architecture probabilities."""

    def __call__(self, arch: Architecture, name: str) -> Mixing:
        return Mixing(arch.probs(name))


class GumbelHard:
    """GDAS: one op per row drawn by Gumbel-max, with the straight-through softmax_tau gradient.

    tau: temperature (set by the search loop each epoch). generator: source of the Gumbel noise.
    """

    def __init__(self, tau: float = 10.0, generator: torch.Generator | None = None) -> None:
        self.tau = tau
        self.generator = generator

    def __call__(self, arch: Architecture, name: str) -> Mixing:
        log_p = arch.log_probs(name)
        while True:  # redraw in the (measure-zero) case of a non-finite sample, as GDAS does
            noise = torch.empty_like(log_p).exponential_(generator=self.generator).log().neg()
            soft = torch.softmax((log_p + noise) / self.tau, dim=-1)
            if torch.isfinite(soft).all():
                break
        index = soft.argmax(dim=-1)
        hard = torch.zeros_like(soft).scatter_(-1, index.unsqueeze(-1), 1.0)
        weights = hard - soft.detach() + soft
        return Mixing(weights, index.tolist())


RELAXATIONS = {"mixture": Mixture, "gumbel": GumbelHard}


def create_relaxation(name: str, **kwargs: object) -> Relaxation:
    """Build a registered relaxation by name."""
    if name not in RELAXATIONS:
        raise ConfigError(f"unknown relaxation {name!r}; known: {sorted(RELAXATIONS)}")
    return RELAXATIONS[name](**kwargs)


__all__ = ["Architecture", "PARAMETRISATIONS", "Mixing", "Relaxation", "Mixture", "GumbelHard",
           "RELAXATIONS", "create_relaxation"]
