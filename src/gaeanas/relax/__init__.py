"""How architecture weights mix candidate operations: soft mixture or Gumbel hard sampling (methods pick one)."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, NamedTuple, Protocol, Sequence

import torch

from ..errors import ConfigError
from .arch import PARAMETRISATIONS, Architecture


class Mixing(NamedTuple):
    """What a supernet edge needs: weights (..., k); for hard sampling the chosen op per row; for sparse
    skipping, per row and op whether the op runs at all (`active`, a host-side nested list of bools)."""

    weights: torch.Tensor
    index: list | None = None
    active: list | None = None


class Relaxation(Protocol):
    def __call__(self, arch: Architecture, name: str) -> Mixing: ...


class Mixture:
    """DARTS' continuous relaxation: every op runs, weighted by the architecture probabilities.

    threshold > 0 turns on sparse skipping for operation weights (tensors of rows x ops): a weight below
    the threshold counts as 0, so its op need not run and its gradient is 0. GAEA drives weights towards
    the simplex's corners, so more ops drop out as the search converges. One host sync per tensor and step.
    """

    def __init__(self, threshold: float = 0.0) -> None:
        if not 0.0 <= threshold < 1.0:
            raise ConfigError(f"the sparse-skip threshold must be in [0, 1), got {threshold}")
        self.threshold = threshold

    def __call__(self, arch: Architecture, name: str) -> Mixing:
        probs = arch.probs(name)
        if not self.threshold or probs.dim() != 2:  # 1-D tensors are edge weights (PC-DARTS), never skipped
            return Mixing(probs)
        return sparse_mixing(probs, self.threshold)


def sparse_mixing(probs: torch.Tensor, threshold: float) -> Mixing:
    """Weights below `threshold` set to 0 (no gradient), and the host-side map of the ops that still run."""
    keep = probs.detach() >= threshold
    return Mixing(probs * keep, active=keep.tolist())


class GumbelHard:
    """GDAS: one op per row drawn by Gumbel-max, with the straight-through softmax_tau gradient.

    tau: temperature (set by the search loop each epoch). generator: source of the Gumbel noise.
    sample: False runs each row's most probable op instead of a draw (evaluation, see `deterministic`).
    """

    def __init__(self, tau: float = 10.0, generator: torch.Generator | None = None) -> None:
        self.tau = tau
        self.generator = generator
        self.sample = True

    def __call__(self, arch: Architecture, name: str) -> Mixing:
        log_p = arch.log_probs(name)
        if not self.sample:
            index = log_p.argmax(dim=-1)
            return Mixing(torch.zeros_like(log_p).scatter_(-1, index.unsqueeze(-1), 1.0), index.tolist())
        while True:  # redraw in the (measure-zero) case of a non-finite sample, as GDAS does
            noise = torch.empty_like(log_p).exponential_(generator=self.generator).log().neg()
            soft = torch.softmax((log_p + noise) / self.tau, dim=-1)
            if torch.isfinite(soft).all():
                break
        index = soft.argmax(dim=-1)
        hard = torch.zeros_like(soft).scatter_(-1, index.unsqueeze(-1), 1.0)
        weights = hard - soft.detach() + soft
        return Mixing(weights, index.tolist())


@contextmanager
def deterministic(relaxation: Relaxation) -> Iterator[None]:
    """Within the block a sampling relaxation runs each row's most probable op (what the genotype keeps);
    a soft mixture is deterministic already."""
    if not isinstance(relaxation, GumbelHard):
        yield
        return
    relaxation.sample = False
    try:
        yield
    finally:
        relaxation.sample = True


def mix_candidates(x: torch.Tensor, candidates: Sequence[torch.nn.Module], weights: torch.Tensor,
                   index: int | None, is_zero: Sequence[bool], active: Sequence[bool] | None = None
                   ) -> torch.Tensor | None:
    """One edge's output: sum_k w_k op_k(x), or with `index` only the sampled op.

    Hard sampling adds the other weights' values (0 for a straight-through one-hot) so they keep their
    gradient. `none` ops (is_zero) are skipped: they add 0 to the value and to every gradient; so are ops
    that `active` marks off (sparse skipping, whose weights are 0). Returns None when every op is skipped;
    the caller supplies the zero tensor of the right shape.
    """
    if index is not None:
        chosen = weights[index] * candidates[index](x)
        return chosen + (weights.sum() - weights[index])
    out = None
    for k, (w, op, zero) in enumerate(zip(weights, candidates, is_zero)):
        if not zero and (active is None or active[k]):
            term = w * op(x)
            out = term if out is None else out + term
    return out


__all__ = ["Architecture", "PARAMETRISATIONS", "Mixing", "Relaxation", "Mixture", "GumbelHard", "deterministic", "mix_candidates",
           "sparse_mixing"]
