"""Speed kernels: the candidate ops of several edges fused into one call, and memory-layout helpers."""
from __future__ import annotations

from typing import Callable, Mapping, Sequence, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

# ---- layout helpers ----------------------------------------------------------------------------------


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


def tile_channels(x: torch.Tensor, n: int) -> torch.Tensor:
    """x.repeat(1, n, 1, 1), keeping x's memory format: repeat returns NCHW, and a channels_last network then
    pays for layout conversions and, in backward, for BN's slow mixed-layout kernel."""
    return torch.cat([x] * n, dim=1)


# ---- space-to-batch depthwise convolution ------------------------------------------------------------


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


# ---- 3x3 average pooling as a depthwise convolution ---------------------------------------------------


def avg_pool3x3(x: torch.Tensor, stride: int = 1) -> torch.Tensor:
    """F.avg_pool2d(x, 3, stride, padding=1, count_include_pad=False): the mean over each window's pixels inside
    the image. On the CPU it runs as a depthwise conv with a constant 1/9 kernel, divided by the share of each
    window inside the image (9/9 inside, 6/9 on an edge, 4/9 in a corner): the same sums, and forward and
    backward together run 1.5 to 3 times faster there than the pooling kernels for channels_last maps of 8 to 16
    channels. Elsewhere it calls avg_pool2d."""
    if x.device.type != "cpu" or x.dim() != 4:
        return F.avg_pool2d(x, 3, stride, 1, count_include_pad=False)
    channels = x.shape[1]
    kernel = x.new_full((channels, 1, 3, 3), 1.0 / 9.0)
    y = F.conv2d(x, kernel, None, stride, 1, 1, channels)
    inside = F.avg_pool2d(y.new_ones(1, 1, *x.shape[-2:]), 3, stride, 1, count_include_pad=True)
    return y / inside


class AvgPool3x3(nn.Module):
    """3x3 average pooling with padding 1, padding excluded from the mean (NAS-Bench-201 and DARTS' avg_pool_3x3),
    through avg_pool3x3; no parameters, like the nn.AvgPool2d it stands for."""

    def __init__(self, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return avg_pool3x3(x, self.stride)

    def extra_repr(self) -> str:
        return f"stride={self.stride}"


# ---- several blocks of one op at once ----------------------------------------------------------------
# `blocks` are the same op's modules on E edges; the kernels read their parameters, so they are duck-typed
# on the op classes of gaeanas.ops (which imports this module) rather than importing them.


def per_channel(scale: torch.Tensor, channels: int) -> torch.Tensor:
    """(E,) per-block factors -> (E*channels,), block e's factor on its channels e*channels..(e+1)*channels."""
    return scale.repeat_interleave(channels)


def scaled(y: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    """y (B, E*C, H, W) with block e's channels times scale[e]; y itself without a scale. scale is (E,), or
    (E, B, 1, 1, 1) for per-example weights (XNAS' clipping)."""
    if scale is None:
        return y
    if scale.dim() > 1:
        return torch.cat([part * s for part, s in zip(y.chunk(len(scale), dim=1), scale)], dim=1)
    return y * per_channel(scale, y.shape[1] // len(scale)).view(1, -1, 1, 1)


def batch_norm_together(y: torch.Tensor, bns: Sequence[nn.BatchNorm2d], scale: torch.Tensor | None = None
                        ) -> torch.Tensor:
    """BatchNorm of E stacked blocks of channels, y: (B, E*C, H, W), each block with its own BN, in one call.

    BN is per channel, so this is exactly the E separate calls; running statistics are written back.
    scale: (E,) factors for the blocks' outputs (a mixed op's weights), folded into BN's per-channel affine
    weight: scale[e] * BN_e(y_e) in the same pass, and their gradients from BN backward's own reductions.
    Per-example factors (E, B, 1, 1, 1) cannot ride in BN: they multiply its output.
    """
    if scale is not None and scale.dim() > 1:
        return scaled(batch_norm_together(y, bns), scale)
    bn = bns[0]
    track = bn.track_running_stats and bn.momentum is not None
    training = bn.training or not track
    stats = [torch.cat([b.running_mean for b in bns]), torch.cat([b.running_var for b in bns])] if track else [None, None]
    affine = [torch.cat([b.weight for b in bns]), torch.cat([b.bias for b in bns])] if bn.affine else [None, None]
    if scale is not None:
        factor = per_channel(scale, y.shape[1] // len(bns))
        affine = [factor, None] if affine[0] is None else [affine[0] * factor, affine[1] * factor]
    y = F.batch_norm(y, stats[0], stats[1], affine[0], affine[1], training, bn.momentum or 0.0, bn.eps)
    if track and bn.training:
        with torch.no_grad():
            for b, mean, var in zip(bns, stats[0].chunk(len(bns)), stats[1].chunk(len(bns))):
                b.running_mean.copy_(mean)
                b.running_var.copy_(var)
                b.num_batches_tracked.add_(1)
    return y


def even_and_odd_pixels(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x[..., ::2, ::2] and x[..., 1::2, 1::2] (zero-padded on odd sizes), the inputs of FactorizedReduce's convs.

    A 1x1 conv at stride 2 equals a 1x1 conv on every other pixel. Subsampling first also avoids a oneDNN
    crash in the stride-2 1x1 backward for channels_last inputs with < 8 channels (CPU).
    """
    evens, odds = x[:, :, ::2, ::2], x[:, :, 1::2, 1::2]
    if odds.shape != evens.shape:  # odd sizes: the odd grid is one short; zeros at the bottom / right
        odds = F.pad(odds, (0, evens.shape[3] - odds.shape[3], 0, evens.shape[2] - odds.shape[2]))
    return evens, odds


def factorized_reduce_together(x: torch.Tensor, blocks: Sequence[nn.Module], scale: torch.Tensor | None = None
                               ) -> torch.Tensor:
    """E FactorizedReduce blocks applied to the same x at once: (B, C, H, W) -> (B, E*C_out, H/2, W/2).

    One 1x1 conv over [evens, odds] whose weight is block e's conv_a on the evens' channels and conv_b on the
    odds' (zeros elsewhere) yields every block's [conv_a, conv_b] output in order; then one stacked BN.
    The output and its gradients stay in x's memory format (a cat of per-block outputs gives BN backward
    strided gradients, a slow path on the CPU).
    """
    evens, odds = even_and_odd_pixels(torch.relu(x))
    c = x.shape[1]
    weights = []
    for b in blocks:  # F.pad pads dims from the last: (W, W, H, H, C_in, C_in)
        weights += [F.pad(b.conv_a.weight, (0, 0, 0, 0, 0, c)), F.pad(b.conv_b.weight, (0, 0, 0, 0, c, 0))]
    grids = torch.cat([evens, odds], dim=1).contiguous(memory_format=memory_format_of(x))  # odd sizes lose it
    y = F.conv2d(grids, torch.cat(weights))
    return batch_norm_together(y, [b.bn for b in blocks], scale)


def dil_conv_together(x: torch.Tensor, blocks: Sequence[nn.Sequential], scale: torch.Tensor | None = None
                      ) -> torch.Tensor:
    """The conv-conv-BN part of E DilConv blocks at once. x: (B, E*C, H, W), block e's (ReLU'd) input in
    channels e*C..(e+1)*C -> (B, E*C_out, H', W'): grouped depthwise conv, grouped 1x1 conv, stacked BN
    (scaled per block by `scale`, see batch_norm_together)."""
    dw = blocks[0][1]
    y = depthwise_conv2d(x, torch.cat([b[1].weight for b in blocks]), dw.stride[0], dw.padding[0], dw.dilation[0])
    y = F.conv2d(y, torch.cat([b[2].weight for b in blocks]), None, groups=len(blocks))
    return batch_norm_together(y, [b[3] for b in blocks], scale)


def sep_conv_together(x: torch.Tensor, blocks: Sequence[nn.Sequential], scale: torch.Tensor | None = None
                      ) -> torch.Tensor:
    """E SepConv blocks at once on stacked, already ReLU'd inputs x: (B, E*C, H, W) -> (B, E*C, H', W')."""
    y = dil_conv_together(x, [b[0] for b in blocks])
    return dil_conv_together(torch.relu(y), [b[1] for b in blocks], scale)


def conv_bn_together(x: torch.Tensor, blocks: Sequence[nn.Sequential], scale: torch.Tensor | None = None
                     ) -> list[torch.Tensor]:
    """Apply the Conv-BN of several ReLUConvBN blocks to the same (already ReLU'd) input in one go.

    Stacks the convolution weights along output channels, runs one convolution and one BatchNorm over
    the stacked channels (BN is per channel, so this is exact), and writes the running statistics back.
    """
    conv = blocks[0][1]
    y = F.conv2d(x, torch.cat([b[1].weight for b in blocks]), None, conv.stride, conv.padding)  # (B, E*C, H, W)
    y = batch_norm_together(y, [b[2] for b in blocks], scale)
    return list(y.chunk(len(blocks), dim=1))


# ---- fused kernels: the entries of the name -> kernel tables next to the op lists ----------------------
# A fused kernel runs one op on the E edges that leave the same source state x, given that op's E blocks
# (one per edge, in edge order), the source's cache, which shares derived inputs (the ReLU'd x, tiled
# or not) between the kernels of the different ops, and the op's (E,) mixing weights on those edges, which
# multiply each edge's output. Ops that end in BN fold the weights into BN's affine weight (no pass of
# their own, forward or backward). `none` has no kernel: the supernets skip it.

SourceCache = dict[str, torch.Tensor]
FusedKernel = Callable[[torch.Tensor, Sequence[nn.Module], SourceCache, torch.Tensor], torch.Tensor]
"""(x, blocks, cache, scale) -> the E scaled outputs stacked along channels, (B, E*C_out, H', W') (DARTS cells)."""
FusedEdgesKernel = Callable[[torch.Tensor, Sequence[nn.Module], SourceCache, torch.Tensor], list[torch.Tensor]]
"""(x, blocks, cache, scale) -> the E scaled outputs, one per edge (NAS-Bench-201 cells)."""
K = TypeVar("K", FusedKernel, FusedEdgesKernel)


def _cached(cache: SourceCache, key: str, make: Callable[[], torch.Tensor]) -> torch.Tensor:
    """cache[key], made on first use."""
    if key not in cache:
        cache[key] = make()
    return cache[key]


def _relu(x: torch.Tensor, cache: SourceCache) -> torch.Tensor:
    return _cached(cache, "relu", lambda: torch.relu(x))


def _tiled_relu(x: torch.Tensor, n: int, cache: SourceCache) -> torch.Tensor:
    return _cached(cache, f"relu_tiled{n}", lambda: tile_channels(_relu(x, cache), n))  # (B, n*C, H, W)


def sep_convs(x: torch.Tensor, blocks: Sequence[nn.Module], cache: SourceCache, scale: torch.Tensor) -> torch.Tensor:
    """SepConv on every edge: grouped convs over the tiled ReLU'd input (shared with dil_convs)."""
    return sep_conv_together(_tiled_relu(x, len(blocks), cache), blocks, scale)


def dil_convs(x: torch.Tensor, blocks: Sequence[nn.Module], cache: SourceCache, scale: torch.Tensor) -> torch.Tensor:
    """DilConv on every edge: grouped convs over the tiled ReLU'd input (shared with sep_convs)."""
    return dil_conv_together(_tiled_relu(x, len(blocks), cache), blocks, scale)


def pools_then_bn(x: torch.Tensor, blocks: Sequence[nn.Module], cache: SourceCache, scale: torch.Tensor
                  ) -> torch.Tensor:
    """(pooling, BN) blocks: the pooling is the same on every edge, so it runs once; then one stacked BN."""
    return batch_norm_together(tile_channels(blocks[0][0](x), len(blocks)), [b[1] for b in blocks], scale)


def skips(x: torch.Tensor, blocks: Sequence[nn.Module], cache: SourceCache, scale: torch.Tensor) -> torch.Tensor:
    """DARTS skip_connect: nn.Identity at stride 1 (x on every edge), FactorizedReduce at stride 2."""
    if isinstance(blocks[0], nn.Identity):
        return scaled(tile_channels(x, len(blocks)), scale)
    return factorized_reduce_together(x, blocks, scale)


def relu_conv_bns(x: torch.Tensor, blocks: Sequence[nn.Module], cache: SourceCache, scale: torch.Tensor
                  ) -> list[torch.Tensor]:
    """ReLUConvBN on every edge: one ReLU (shared), one stacked conv, one stacked BN (scaled)."""
    return conv_bn_together(_relu(x, cache), blocks, scale)


def parameter_free(x: torch.Tensor, blocks: Sequence[nn.Module], cache: SourceCache, scale: torch.Tensor
                   ) -> list[torch.Tensor]:
    """An op without parameters or state gives the same output on every edge: it runs once, then is scaled per
    edge."""
    out = blocks[0](x)
    return [w * out for w in scale]


def fused_kernel(table: Mapping[str, K], name: str) -> K:
    """table[name], or an error naming the op when it has no fused kernel."""
    if name not in table:
        raise NotImplementedError(f"operation {name!r} has no fused kernel: add one to the op list's "
                                  "name -> fused-kernel table in gaeanas/ops.py, or build the cells with fused=False")
    return table[name]
