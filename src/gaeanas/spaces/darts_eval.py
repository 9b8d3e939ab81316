"""Discrete DARTS-space networks for training from scratch, CIFAR and ImageNet (Liu et al., 2019; GAEA C.1.2)."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import DARTS_OPS, FactorizedReduce, ReLUConvBN, gradient_in_input_layout
from .darts_genotypes import Genotype

__all__ = ["drop_path", "EvalCell", "AuxiliaryHead", "NetworkCIFAR", "NetworkImageNet", "count_parameters",
           "count_multiply_adds", "drop_path_schedule"]


def drop_path(x: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero each sample's tensor with probability p and scale the kept ones by 1/(1-p) (unbiased).

    Draws from `generator` (on x's device), or the global torch RNG when None.
    """
    if p <= 0.0:
        return x
    keep = 1.0 - p
    mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device).bernoulli_(keep, generator=generator)
    return x * mask / keep


def drop_path_schedule(max_prob: float, epoch: int, epochs: int) -> float:
    """The drop-path probability of 0-based `epoch`: linear from 0 to max_prob, `max_prob * epoch / epochs`."""
    return max_prob * epoch / epochs


def global_average(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C), with the gradient handed back in x's memory format (pooling's is NCHW)."""
    return torch.flatten(F.adaptive_avg_pool2d(gradient_in_input_layout(x), 1), 1)


class EvalCell(nn.Module):
    """One cell of a genotype: preprocess both inputs to C channels, four nodes of two ops each, concat."""

    def __init__(self, genotype: Genotype, c_prev_prev: int, c_prev: int, c: int, reduction: bool,
                 reduction_prev: bool) -> None:
        super().__init__()
        # s0 is at twice the resolution of s1 when the previous cell reduced
        self.preprocess0 = (FactorizedReduce(c_prev_prev, c, affine=True) if reduction_prev
                            else ReLUConvBN(c_prev_prev, c, 1, 1, 0, affine=True))
        self.preprocess1 = ReLUConvBN(c_prev, c, 1, 1, 0, affine=True)
        pairs = genotype.reduce if reduction else genotype.normal
        self.concat = tuple(genotype.reduce_concat if reduction else genotype.normal_concat)
        self.reduction = reduction
        self.inputs = tuple(index for _, index in pairs)
        self.ops = nn.ModuleList(DARTS_OPS[name](c, 2 if reduction and index < 2 else 1, True) for name, index in pairs)
        self.multiplier = len(self.concat)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for k in range(0, len(self.ops), 2):
            node = self._edge(k, states, drop_prob, generator) + self._edge(k + 1, states, drop_prob, generator)
            states.append(node)
        # cat's backward hands each state a strided slice of the gradient; BN backward is slow on those (CPU)
        return torch.cat([gradient_in_input_layout(states[i]) for i in self.concat], dim=1)  # (B, mult * C, H, W)

    def _edge(self, k: int, states: Sequence[torch.Tensor], drop_prob: float,
              generator: torch.Generator | None) -> torch.Tensor:
        op = self.ops[k]
        h = op(states[self.inputs[k]])
        if self.training and not isinstance(op, nn.Identity):
            h = drop_path(h, drop_prob, generator)
        return h


class AuxiliaryHead(nn.Module):
    """DARTS's auxiliary classifier: ReLU, AvgPool 5 (stride 3 on 8x8 CIFAR maps, 2 on 7x7 ImageNet maps),
    Conv1x1 -> 128 + BN + ReLU, Conv2x2 -> 768 (+ BN on CIFAR) + ReLU, linear.

    On maps smaller than the pooling window (tiny images) it pools adaptively to 2x2 instead, and a
    map still larger than 1x1 after the 2x2 convolution is averaged, so any input size works; on
    32x32 CIFAR and 224x224 ImageNet it is exactly DARTS's head.
    """

    def __init__(self, c: int, num_classes: int, pool_stride: int = 3, bn_768: bool = True) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(5, stride=pool_stride, padding=0, count_include_pad=False)
        self.reduce = nn.Sequential(nn.Conv2d(c, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=True))
        # DARTS's ImageNet head has no BN after the 2x2 conv (kept so for comparability with the papers)
        self.expand = nn.Sequential(nn.Conv2d(128, 768, 2, bias=False),
                                    *([nn.BatchNorm2d(768)] if bn_768 else []), nn.ReLU(inplace=True))
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        x = self.pool(x) if min(x.shape[-2:]) >= 5 else F.adaptive_avg_pool2d(x, 2)
        x = self.expand(self.reduce(x))
        return self.classifier(global_average(x))  # (B, num_classes)


class _Network(nn.Module):
    """Shared body: a stack of cells with reductions at L//3 and 2L//3, and the auxiliary head after 2L//3."""

    stem_multiplier = 3
    drop_path_generator: torch.Generator | None = None  # drop-path's noise; None: the global torch RNG

    def _build_cells(self, genotype: Genotype, c: int, cells: int, c_prev_prev: int, c_prev: int,
                     reduction_prev: bool) -> int:
        """Create self.cells; returns the channels entering the auxiliary head."""
        self.cells = nn.ModuleList()
        self.aux_index = 2 * cells // 3
        c_curr, c_aux = c, c_prev
        for i in range(cells):
            reduction = i in (cells // 3, 2 * cells // 3)
            if reduction:
                c_curr *= 2
            cell = EvalCell(genotype, c_prev_prev, c_prev, c_curr, reduction, reduction_prev)
            self.cells.append(cell)
            reduction_prev = reduction
            c_prev_prev, c_prev = c_prev, cell.multiplier * c_curr
            if i == self.aux_index:
                c_aux = c_prev
        self.c_final = c_prev
        return c_aux

    def _run_cells(self, s0: torch.Tensor, s1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        aux_logits = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob, self.drop_path_generator)
            if i == self.aux_index and self.auxiliary is not None and self.training:
                aux_logits = self.auxiliary(s1)
        return s1, aux_logits


class NetworkCIFAR(_Network):
    """The CIFAR evaluation network: 3x3 stem to 3C, `cells` cells, global pooling, linear classifier.

    forward(x) returns (logits, aux_logits), aux_logits being None in eval mode or without the head.
    Set `drop_path_prob` before each epoch (see drop_path_schedule), and `drop_path_generator` for seeded noise.
    """

    def __init__(self, genotype: Genotype, channels: int = 36, cells: int = 20, num_classes: int = 10,
                 auxiliary: bool = True, drop_path_prob: float = 0.0) -> None:
        super().__init__()
        self.genotype, self.drop_path_prob = genotype, drop_path_prob
        c_stem = self.stem_multiplier * channels
        self.stem = nn.Sequential(nn.Conv2d(3, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem))
        c_aux = self._build_cells(genotype, channels, cells, c_stem, c_stem, False)
        self.auxiliary = AuxiliaryHead(c_aux, num_classes, pool_stride=3) if auxiliary else None
        self.classifier = nn.Linear(self.c_final, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        s = self.stem(x)
        out, aux_logits = self._run_cells(s, s)
        logits = self.classifier(global_average(out))
        return logits, aux_logits


class NetworkImageNet(_Network):
    """The ImageNet mobile-setting network: stride-2 stems (224 -> 28 pixels), `cells` cells, global pooling.

    stem0 is conv3x3 s2 (3 -> C/2), BN, ReLU, conv3x3 s2 (C/2 -> C), BN; stem1 is ReLU, conv3x3 s2, BN.
    The first cell's first input (stem0's output) has twice the resolution of its second, so it is
    preprocessed with FactorizedReduce, as after a reduction cell.
    """

    def __init__(self, genotype: Genotype, channels: int = 48, cells: int = 14, num_classes: int = 1000,
                 auxiliary: bool = True, drop_path_prob: float = 0.0) -> None:
        super().__init__()
        self.genotype, self.drop_path_prob = genotype, drop_path_prob
        c = channels
        self.stem0 = nn.Sequential(
            nn.Conv2d(3, c // 2, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c // 2), nn.ReLU(inplace=True),
            nn.Conv2d(c // 2, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c))
        self.stem1 = nn.Sequential(nn.ReLU(), nn.Conv2d(c, c, 3, stride=2, padding=1, bias=False),
                                   nn.BatchNorm2d(c))
        c_aux = self._build_cells(genotype, c, cells, c, c, True)
        self.auxiliary = AuxiliaryHead(c_aux, num_classes, pool_stride=2, bn_768=False) if auxiliary else None
        self.classifier = nn.Linear(self.c_final, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        s0 = self.stem0(x)
        s1 = self.stem1(s0)
        out, aux_logits = self._run_cells(s0, s1)
        logits = self.classifier(global_average(out))
        return logits, aux_logits


def count_parameters(model: nn.Module, exclude_auxiliary: bool = True) -> float:
    """Parameters in millions; by convention the auxiliary head is not counted."""
    return sum(p.numel() for name, p in model.named_parameters()
               if not (exclude_auxiliary and name.startswith("auxiliary."))) / 1e6


def count_multiply_adds(model: nn.Module, input_size: Sequence[int]) -> float:
    """Multiply-adds (millions) of Conv2d and Linear layers for one image of `input_size` (C, H, W), in eval mode.

    Counted with forward hooks; BN, pooling, additions and the auxiliary head (train-only) are left
    out, as in the DARTS lineage's reported numbers.
    """
    total = 0

    def conv_hook(module: nn.Conv2d, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        total += out[0].numel() * (module.in_channels // module.groups) * kh * kw

    def linear_hook(module: nn.Linear, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        total += module.in_features * module.out_features

    hooks = [m.register_forward_hook(conv_hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    hooks += [m.register_forward_hook(linear_hook) for m in model.modules() if isinstance(m, nn.Linear)]
    was_training = model.training
    param = next(model.parameters())
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *input_size), device=param.device, dtype=param.dtype))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return total / 1e6
