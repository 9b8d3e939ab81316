"""Partial channel connections (PC-DARTS, Xu et al., ICLR 2020): an edge sees only 1/K of its channels."""
from __future__ import annotations

import torch
from torch import nn

from ..ops import memory_format_of


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave `groups` equal channel groups (ShuffleNet): channel g*(C/groups) + p moves to p*groups + g.

    x: (B, C, H, W) with C divisible by groups. Keeps channels_last memory format if x has it.
    """
    b, c, h, w = x.shape
    if c % groups:
        raise ValueError(f"channel_shuffle needs channels divisible by groups, got {c} and {groups}")
    if memory_format_of(x) == torch.channels_last:  # shuffle the innermost dimension: stays channels_last,
        nhwc = x.permute(0, 2, 3, 1)                  # in backward too
        return nhwc.reshape(b, h, w, groups, c // groups).transpose(3, 4).reshape(b, h, w, c).permute(0, 3, 1, 2)
    return x.reshape(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)  # (B, C, H, W)


def channel_unshuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """The inverse of channel_shuffle(x, groups)."""
    return channel_shuffle(x, x.shape[1] // groups)


class PartialChannels(nn.Module):
    """Wrap an edge module: its first C/K channels go through `edge`, the rest bypass it.

    The bypass is the identity, or a 2x2 max pool (stride 2) on a stride-2 edge; the two parts are
    concatenated (edge output first) and channel-shuffled with K groups. `edge` must map C/K
    channels to C/K channels and is called as edge(x_part, *args).
    """

    def __init__(self, edge: nn.Module, channels: int, k: int, stride: int) -> None:
        super().__init__()
        if k < 1 or channels % k:
            raise ValueError(f"partial channels need channels divisible by K, got {channels} and K={k}")
        self.edge, self.channels, self.k = edge, channels, k
        # ceil_mode matches the stride-2 ops' ceil(H/2) output on odd sizes; same as floor on even ones.
        self.bypass = nn.MaxPool2d(2, 2, ceil_mode=True) if stride == 2 else nn.Identity()

    def forward(self, x: torch.Tensor, *args) -> torch.Tensor:
        if self.k == 1:
            return self.edge(x, *args)
        part = self.channels // self.k
        through, rest = x.split([part, self.channels - part], dim=1)  # split's backward keeps the layout
        through = self.edge(through, *args)            # (B, C/K, H', W')
        bypass = self.bypass(rest)                     # (B, C - C/K, H', W')
        return channel_shuffle(torch.cat([through, bypass], dim=1), self.k)  # (B, C, H', W')
