"""Candidate operations of the NAS-Bench-201 cell (Dong & Yang, ICLR 2020), by name."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn


class ReLUConvBN(nn.Sequential):
    """ReLU -> Conv(k, stride, padding, no bias) -> BN."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class Zero(nn.Module):
    """The `none` operation: outputs zeros of the right shape."""

    def __init__(self, c_out: int, stride: int) -> None:
        super().__init__()
        self.c_out, self.stride = c_out, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        shape = (x.shape[0], self.c_out, x.shape[2], x.shape[3])
        return x.new_zeros(shape)


class AvgPool(nn.Module):
    """3x3 average pooling (padding 1, padding excluded from the mean), 1x1 conv first if channels change."""

    def __init__(self, c_in: int, c_out: int, stride: int, affine: bool) -> None:
        super().__init__()
        self.pre = None if c_in == c_out else ReLUConvBN(c_in, c_out, 1, 1, 0, affine)
        self.pool = nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x if self.pre is None else self.pre(x))


def _skip(c_in: int, c_out: int, stride: int, affine: bool) -> nn.Module:
    if stride != 1 or c_in != c_out:
        raise ValueError("skip_connect in the NAS-Bench-201 cell needs stride 1 and equal channels")
    return nn.Identity()


OpFactory = Callable[[int, int, int, bool], nn.Module]

# name -> factory(c_in, c_out, stride, affine)
NB201_OPS: dict[str, OpFactory] = {
    "none": lambda c_in, c_out, stride, affine: Zero(c_out, stride),
    "skip_connect": _skip,
    "nor_conv_1x1": lambda c_in, c_out, stride, affine: ReLUConvBN(c_in, c_out, 1, stride, 0, affine),
    "nor_conv_3x3": lambda c_in, c_out, stride, affine: ReLUConvBN(c_in, c_out, 3, stride, 1, affine),
    "avg_pool_3x3": lambda c_in, c_out, stride, affine: AvgPool(c_in, c_out, stride, affine),
}


class ResNetBasicBlock(nn.Module):
    """NAS-Bench-201's reduction block: ReLU-Conv3x3(s)-BN, ReLU-Conv3x3-BN, plus AvgPool+Conv1x1 shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.branch = nn.Sequential(ReLUConvBN(c_in, c_out, 3, stride, 1, True),
                                    ReLUConvBN(c_out, c_out, 3, 1, 1, True))
        if stride == 2:
            self.shortcut: nn.Module = nn.Sequential(nn.AvgPool2d(2, 2),
                                                     nn.Conv2d(c_in, c_out, 1, bias=False))
        elif c_in != c_out:
            self.shortcut = ReLUConvBN(c_in, c_out, 1, 1, 0, True)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.branch(x)
