"""Architecture parameters: one row of mixing weights per decision, as logits (DARTS) or on the simplex (GAEA)."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError

PARAMETRISATIONS = ("logits", "simplex")
LOGIT_INIT_STD = 1e-3  # DARTS: alpha = 1e-3 * randn


class Architecture(nn.Module):
    """Named tensors of shape (..., k); each row is one decision over k candidates.

    `logits`: probabilities are softmax(theta), theta initialised at 1e-3 * randn (DARTS, GDAS).
    `simplex`: theta are the probabilities themselves, initialised uniform (GAEA).
    Tensors of two or more dimensions hold operation weights (rows of edges x ops); 1-D tensors hold one node's
    weights over its incoming edges (PC-DARTS' beta).
    """

    def __init__(self, shapes: dict[str, tuple[int, ...]], parametrisation: str) -> None:
        super().__init__()
        if parametrisation not in PARAMETRISATIONS:
            raise ConfigError(f"unknown parametrisation {parametrisation!r}; known: {PARAMETRISATIONS}")
        self.parametrisation = parametrisation
        self.theta = nn.ParameterDict({name: nn.Parameter(self._init(shape)) for name, shape in shapes.items()})

    @property
    def op_names(self) -> list[str]:
        """The tensors of operation weights (rows over candidate ops)."""
        return [name for name, theta in self.theta.items() if theta.dim() >= 2]

    @property
    def edge_names(self) -> list[str]:
        """The per-node tensors of edge weights (PC-DARTS' beta); empty for most methods."""
        return [name for name, theta in self.theta.items() if theta.dim() == 1]

    def _init(self, shape: tuple[int, ...]) -> torch.Tensor:
        if self.parametrisation == "logits":
            return LOGIT_INIT_STD * torch.randn(shape)
        return torch.full(shape, 1.0 / shape[-1])

    def probs(self, name: str) -> torch.Tensor:
        """Mixing probabilities for `name`, (..., k), differentiable in theta."""
        theta = self.theta[name]
        return torch.softmax(theta, dim=-1) if self.parametrisation == "logits" else theta

    def log_probs(self, name: str) -> torch.Tensor:
        """log of probs(name): log_softmax for logits, log(theta) on the simplex."""
        theta = self.theta[name]
        return torch.log_softmax(theta, dim=-1) if self.parametrisation == "logits" else torch.log(theta)

    @torch.no_grad()
    def entropy(self) -> torch.Tensor:
        """Mean Shannon entropy (nats) over the rows of the operation weights (the paper's Figure 1)."""
        return self._mean_entropy(self.op_names)

    @torch.no_grad()
    def edge_entropy(self) -> torch.Tensor | None:
        """Mean Shannon entropy (nats) over the per-node edge weights; None when there are none."""
        return self._mean_entropy(self.edge_names) if self.edge_names else None

    def _mean_entropy(self, names: list[str]) -> torch.Tensor:
        return torch.cat([self._row_entropy(self.probs(name)).flatten() for name in names]).mean()

    @staticmethod
    def _row_entropy(p: torch.Tensor) -> torch.Tensor:
        return -(p * torch.log(p.clamp_min(1e-30))).sum(dim=-1)

    @torch.no_grad()
    def as_lists(self) -> dict[str, list]:
        """The probabilities as nested Python lists, for JSON logs."""
        return {name: self.probs(name).float().cpu().tolist() for name in self.theta}
