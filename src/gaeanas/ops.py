"""Candidate operations by name: the NAS-Bench-201 cell (Dong & Yang, 2020), the DARTS cell (Liu et al., 2019) and
the NAS-Bench-101 node (Ying et al., 2019)."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from . import kernels
from .kernels import depthwise_conv2d, even_and_odd_pixels
from .kernels import gradient_in_input_layout, memory_format_of  # noqa: F401  re-export: relax/, darts_eval use it


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
        self.pool = kernels.AvgPool3x3(stride)

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

# name -> fused kernel: the op on every edge leaving one node at once, one output per edge (`none`: skipped;
# an op missing here makes the fused cells raise NotImplementedError naming it).
# The cell keeps the channels, so skip_connect and avg_pool_3x3 have no parameters: they run once.
NB201_FUSED: dict[str, kernels.FusedEdgesKernel] = {
    "skip_connect": kernels.parameter_free,
    "nor_conv_1x1": kernels.relu_conv_bns,
    "nor_conv_3x3": kernels.relu_conv_bns,
    "avg_pool_3x3": kernels.parameter_free,
}


class ResNetBasicBlock(nn.Module):
    """NAS-Bench-201's reduction block: ReLU-Conv3x3(s)-BN, ReLU-Conv3x3-BN, plus AvgPool+Conv1x1 shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.branch = nn.Sequential(ReLUConvBN(c_in, c_out, 3, stride, 1, True),
                                    ReLUConvBN(c_out, c_out, 3, 1, 1, True))
        if stride == 2:
            # ceil_mode: an odd side halves to the size the stride-2 branch gives (5 -> 3); even sides are unchanged
            self.shortcut: nn.Module = nn.Sequential(nn.AvgPool2d(2, 2, ceil_mode=True),
                                                     nn.Conv2d(c_in, c_out, 1, bias=False))
        elif c_in != c_out:
            self.shortcut = ReLUConvBN(c_in, c_out, 1, 1, 0, True)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.branch(x)


# ---- DARTS search space (Liu, Simonyan & Yang, ICLR 2019) -------------------------------------------

class FactorizedReduce(nn.Module):
    """Halve the resolution without losing pixels: ReLU, two offset stride-2 1x1 convs, concatenated, BN."""

    def __init__(self, c_in: int, c_out: int, affine: bool = True) -> None:
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even number of output channels, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_a = nn.Conv2d(c_in, c_out // 2, 1, bias=False)
        self.conv_b = nn.Conv2d(c_in, c_out // 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        evens, odds = even_and_odd_pixels(self.relu(x))
        return self.bn(torch.cat([self.conv_a(evens), self.conv_b(odds)], dim=1))


class DepthwiseConv2d(nn.Conv2d):
    """A bias-free depthwise nn.Conv2d (same parameters and state dict) that runs through depthwise_conv2d."""

    def __init__(self, channels: int, kernel: int, stride: int, padding: int, dilation: int) -> None:
        super().__init__(channels, channels, kernel, stride, padding, dilation=dilation, groups=channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return depthwise_conv2d(x, self.weight, self.stride[0], self.padding[0], self.dilation[0])


class DilConv(nn.Sequential):
    """ReLU -> depthwise conv (k, dilation) -> pointwise 1x1 -> BN."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, dilation: int,
                 affine: bool) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            DepthwiseConv2d(c_in, kernel, stride, padding, dilation),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """A separable convolution applied twice (the first one carries the stride), as in DARTS."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool) -> None:
        super().__init__(DilConv(c_in, c_in, kernel, stride, padding, 1, affine),
                         DilConv(c_in, c_out, kernel, 1, padding, 1, affine))


def _darts_skip(c: int, stride: int, affine: bool) -> nn.Module:
    return nn.Identity() if stride == 1 else FactorizedReduce(c, c, affine)


# name -> factory(channels, stride, affine); every DARTS op keeps the channel count.
DARTS_OPS: dict[str, Callable[[int, int, bool], nn.Module]] = {
    "none": lambda c, stride, affine: Zero(c, stride),
    "max_pool_3x3": lambda c, stride, affine: nn.MaxPool2d(3, stride=stride, padding=1),
    "avg_pool_3x3": lambda c, stride, affine: kernels.AvgPool3x3(stride),
    "skip_connect": _darts_skip,
    "sep_conv_3x3": lambda c, stride, affine: SepConv(c, c, 3, stride, 1, affine),
    "sep_conv_5x5": lambda c, stride, affine: SepConv(c, c, 5, stride, 2, affine),
    "dil_conv_3x3": lambda c, stride, affine: DilConv(c, c, 3, stride, 2, 2, affine),
    "dil_conv_5x5": lambda c, stride, affine: DilConv(c, c, 5, stride, 4, 2, affine),
}

# name -> fused kernel: the op on every edge leaving one state at once, outputs stacked along channels
# (`none`: skipped; an op missing here makes the fused cells raise NotImplementedError naming it).
# In the search cell each pooling is followed by a BN (spaces.darts.MixedOp).
DARTS_FUSED: dict[str, kernels.FusedKernel] = {
    "max_pool_3x3": kernels.pools_then_bn,
    "avg_pool_3x3": kernels.pools_then_bn,
    "skip_connect": kernels.skips,
    "sep_conv_3x3": kernels.sep_convs,
    "sep_conv_5x5": kernels.sep_convs,
    "dil_conv_3x3": kernels.dil_convs,
    "dil_conv_5x5": kernels.dil_convs,
}


class ConvBNReLU(nn.Sequential):
    """Conv(k, stride 1, same padding, no bias) -> BN (affine) -> ReLU: NAS-Bench-101's conv_bn_relu."""

    def __init__(self, c_in: int, c_out: int, kernel: int) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=False),
        )


# name -> factory(channels); NAS-Bench-101's node operations (names as in its data file), all keeping the channels.
NB101_OPS: dict[str, Callable[[int], nn.Module]] = {
    "maxpool3x3": lambda c: nn.MaxPool2d(3, stride=1, padding=1),
    "conv3x3-bn-relu": lambda c: ConvBNReLU(c, c, 3),
    "conv1x1-bn-relu": lambda c: ConvBNReLU(c, c, 1),
}
