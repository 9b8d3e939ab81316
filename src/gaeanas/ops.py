"""Candidate operations by name: the NAS-Bench-201 cell (Dong & Yang, 2020) and the DARTS cell (Liu et al., 2019)."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
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


def memory_format_of(x: torch.Tensor) -> torch.memory_format:
    """channels_last if x's channels are its innermost dimension (also for channel slices of such a tensor)."""
    return torch.channels_last if x.dim() == 4 and x.stride(1) < x.stride(3) else torch.contiguous_format


class _GradientInInputLayout(torch.autograd.Function):
    """Identity whose backward hands back the gradient in the input's memory format."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.memory_format = memory_format_of(x)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous(memory_format=ctx.memory_format)


def gradient_in_input_layout(x: torch.Tensor) -> torch.Tensor:
    """x, unchanged; its gradient arrives in x's memory format. Put before ops whose backward drops
    channels_last (global average pooling), so the layers below get gradients in their own layout."""
    return _GradientInInputLayout.apply(x)


def batch_norm_together(y: torch.Tensor, bns: list[nn.BatchNorm2d]) -> torch.Tensor:
    """BatchNorm of E stacked blocks of channels, y: (B, E*C, H, W), each block with its own BN, in one call.

    BN is per channel, so this is exactly the E separate calls; running statistics are written back.
    """
    bn = bns[0]
    track = bn.track_running_stats and bn.momentum is not None
    training = bn.training or not track
    stats = [torch.cat([b.running_mean for b in bns]), torch.cat([b.running_var for b in bns])] if track else [None, None]
    affine = [torch.cat([b.weight for b in bns]), torch.cat([b.bias for b in bns])] if bn.affine else [None, None]
    y = F.batch_norm(y, stats[0], stats[1], affine[0], affine[1], training, bn.momentum or 0.0, bn.eps)
    if track and bn.training:
        with torch.no_grad():
            for b, mean, var in zip(bns, stats[0].chunk(len(bns)), stats[1].chunk(len(bns))):
                b.running_mean.copy_(mean)
                b.running_var.copy_(var)
                b.num_batches_tracked.add_(1)
    return y


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
        evens, odds = _even_and_odd_pixels(self.relu(x))
        return self.bn(torch.cat([self.conv_a(evens), self.conv_b(odds)], dim=1))


def _even_and_odd_pixels(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x[..., ::2, ::2] and x[..., 1::2, 1::2] (zero-padded on odd sizes), the inputs of FactorizedReduce's convs.

    A 1x1 conv at stride 2 equals a 1x1 conv on every other pixel. Subsampling first also avoids a oneDNN
    crash in the stride-2 1x1 backward for channels_last inputs with < 8 channels (CPU).
    """
    evens, odds = x[:, :, ::2, ::2], x[:, :, 1::2, 1::2]
    if odds.shape != evens.shape:  # odd sizes: the odd grid is one short; zeros at the bottom / right
        odds = F.pad(odds, (0, evens.shape[3] - odds.shape[3], 0, evens.shape[2] - odds.shape[2]))
    return evens, odds


def factorized_reduce_together(x: torch.Tensor, blocks: list[FactorizedReduce]) -> torch.Tensor:
    """E FactorizedReduce blocks applied to the same x at once: (B, C, H, W) -> (B, E*C_out, H/2, W/2).

    One 1x1 conv over [evens, odds] whose weight is block e's conv_a on the evens' channels and conv_b on the
    odds' (zeros elsewhere) yields every block's [conv_a, conv_b] output in order; then one stacked BN.
    The output and its gradients stay in x's memory format (a cat of per-block outputs gives BN backward
    strided gradients, a slow path on the CPU).
    """
    evens, odds = _even_and_odd_pixels(torch.relu(x))
    c = x.shape[1]
    weights = []
    for b in blocks:  # F.pad pads dims from the last: (W, W, H, H, C_in, C_in)
        weights += [F.pad(b.conv_a.weight, (0, 0, 0, 0, 0, c)), F.pad(b.conv_b.weight, (0, 0, 0, 0, c, 0))]
    grids = torch.cat([evens, odds], dim=1).contiguous(memory_format=memory_format_of(x))  # odd sizes lose it
    y = F.conv2d(grids, torch.cat(weights))
    return batch_norm_together(y, [b.bn for b in blocks])


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


def _to_phases(x: torch.Tensor, d: int) -> torch.Tensor:
    """(B, C, H, W) -> (d*d*B, C, H/d, W/d): the d x d interleaved sub-grids x[..., a::d, b::d], stacked on the
    batch (space-to-batch), in channels_last memory."""
    b, c, h, w = x.shape
    y = x.reshape(b, c, h // d, d, w // d, d).permute(3, 5, 0, 2, 4, 1).reshape(d * d * b, h // d, w // d, c)
    return y.permute(0, 3, 1, 2)


def _from_phases(y: torch.Tensor, d: int) -> torch.Tensor:
    """Inverse of _to_phases: (d*d*B, C, h, w) -> (B, C, h*d, w*d), in channels_last memory."""
    n, c, h, w = y.shape
    b = n // (d * d)
    x = y.permute(0, 2, 3, 1).reshape(d, d, b, h, w, c).permute(2, 3, 0, 4, 1, 5).reshape(b, h * d, w * d, c)
    return x.permute(0, 3, 1, 2)


def depthwise_conv2d(x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int, dilation: int) -> torch.Tensor:
    """F.conv2d(x, weight, None, stride, padding, dilation, groups=C), computed without dilation when the
    maths allows, as atrous convolution is usually implemented. A 'same'-padded conv with dilation d only
    mixes pixels of one d x d sub-grid: with stride d it is an undilated conv on the sub-grid x[..., ::d, ::d];
    with stride 1 it is an undilated conv on each of the d*d sub-grids (space-to-batch). CPU kernels for
    dilated depthwise backward are several times slower than undilated ones."""
    d, (h, w), k, groups = dilation, x.shape[-2:], weight.shape[-1], x.shape[1]
    same = padding == d * (k - 1) // 2 and k % 2 == 1 and weight.shape[-2] == k
    if d == 1 or not same or h % d or w % d or stride not in (1, d):
        return F.conv2d(x, weight, None, stride, padding, dilation, groups=groups)
    if stride == d:
        return F.conv2d(x[:, :, ::d, ::d], weight, None, 1, (k - 1) // 2, 1, groups=groups)
    return _from_phases(F.conv2d(_to_phases(x, d), weight, None, 1, (k - 1) // 2, 1, groups=groups), d)


def dil_conv_together(x: torch.Tensor, blocks: list["DilConv"]) -> torch.Tensor:
    """The conv-conv-BN part of E DilConv blocks at once. x: (B, E*C, H, W), block e's (ReLU'd) input in
    channels e*C..(e+1)*C -> (B, E*C_out, H', W'): grouped depthwise conv, grouped 1x1 conv, stacked BN."""
    dw = blocks[0][1]
    y = depthwise_conv2d(x, torch.cat([b[1].weight for b in blocks]), dw.stride[0], dw.padding[0], dw.dilation[0])
    y = F.conv2d(y, torch.cat([b[2].weight for b in blocks]), None, groups=len(blocks))
    return batch_norm_together(y, [b[3] for b in blocks])


def sep_conv_together(x: torch.Tensor, blocks: list["SepConv"]) -> torch.Tensor:
    """E SepConv blocks at once on stacked, already ReLU'd inputs x: (B, E*C, H, W) -> (B, E*C, H', W')."""
    y = dil_conv_together(x, [b[0] for b in blocks])
    return dil_conv_together(torch.relu(y), [b[1] for b in blocks])


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
    "avg_pool_3x3": lambda c, stride, affine: nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False),
    "skip_connect": _darts_skip,
    "sep_conv_3x3": lambda c, stride, affine: SepConv(c, c, 3, stride, 1, affine),
    "sep_conv_5x5": lambda c, stride, affine: SepConv(c, c, 5, stride, 2, affine),
    "dil_conv_3x3": lambda c, stride, affine: DilConv(c, c, 3, stride, 2, 2, affine),
    "dil_conv_5x5": lambda c, stride, affine: DilConv(c, c, 5, stride, 4, 2, affine),
}
