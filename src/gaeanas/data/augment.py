"""Batched tensor ops on the images' device: channel statistics, normalisation, random crop + flip, cutout."""
from __future__ import annotations

from typing import Any

import torch

from ..errors import DataError

__all__ = ["channel_stats", "normalize", "augment_batch", "cutout_batch"]


def channel_stats(images: torch.Tensor, chunk: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and (population) std of uint8 (N, C, H, W) images in [0, 1] units, float32."""
    if images.dim() != 4 or images.numel() == 0:
        raise DataError(f"channel_stats needs a non-empty (N, C, H, W) tensor, got {tuple(images.shape)}")
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64, device=images.device)
    total_sq = torch.zeros(c, dtype=torch.float64, device=images.device)
    for start in range(0, images.shape[0], chunk):
        block = images[start:start + chunk].transpose(0, 1).reshape(c, -1).double()
        total += block.sum(dim=1)
        total_sq += block.square().sum(dim=1)
    count = images.numel() // c
    mean = total / count
    var = (total_sq / count - mean.square()).clamp_(min=0.0)
    return (mean / 255.0).float(), (var.sqrt() / 255.0).float()


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 (..., C, H, W) -> `dtype` computed as (x / 255 - mean) / std per channel."""
    scale, shift = _affine(mean, std, images.device)
    out = images.to(torch.float32, copy=True).mul_(scale).sub_(shift)
    return out if dtype == torch.float32 else out.to(dtype)


def _affine(mean: Any, std: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(1 / (255 std), mean / std) shaped (C, 1, 1), float32 on `device`."""
    mean_t = torch.as_tensor(mean, dtype=torch.float32).to(device).reshape(-1, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32).to(device).reshape(-1, 1, 1)
    return 1.0 / (255.0 * std_t), mean_t / std_t


def augment_batch(images: torch.Tensor, generator: torch.Generator, crop_pad: int = 4,
                  flip: bool = True) -> torch.Tensor:
    """Random crop with zero padding `crop_pad` and random horizontal flip (p=0.5), per image, batched.

    One gather does both: output pixel (i, j) of image b is padded[b, :, dy_b + i, dx_b + j'] with
    j' = W - 1 - j when image b is flipped, else j. All randomness comes from `generator`.
    """
    if images.dim() != 4 or images.dtype != torch.uint8:
        raise DataError(f"augment_batch needs uint8 (B, C, H, W), got {images.dtype} {tuple(images.shape)}")
    if crop_pad < 0:
        raise DataError(f"crop_pad must be >= 0, got {crop_pad}")
    _check_generator(generator, images.device)
    if crop_pad == 0 and not flip:
        return images.clone()
    b, c, h, w = images.shape
    dev = images.device
    rows = torch.arange(h, device=dev).expand(b, h)
    cols = torch.arange(w, device=dev).expand(b, w)
    if crop_pad > 0:
        shifts = torch.randint(0, 2 * crop_pad + 1, (2, b), generator=generator, device=dev)
        rows = rows + shifts[0, :, None]
        cols = cols + shifts[1, :, None]
        padded = images.new_zeros((b, c, h + 2 * crop_pad, w + 2 * crop_pad))
        padded[:, :, crop_pad:crop_pad + h, crop_pad:crop_pad + w] = images
    else:
        padded = images
    if flip:
        flips = torch.randint(0, 2, (b, 1), generator=generator, device=dev).bool()
        cols = torch.where(flips, cols.flip(1), cols)
    bi = torch.arange(b, device=dev).view(b, 1, 1, 1)
    ci = torch.arange(c, device=dev).view(1, c, 1, 1)
    return padded[bi, ci, rows.reshape(b, 1, h, 1), cols.reshape(b, 1, 1, w)]


def cutout_batch(x: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Cutout (DeVries & Taylor, 2017) as in DARTS: zero one size x size square per image, batched.

    Each square's centre is uniform over the image's pixels and the square is clipped at the
    borders, so it covers rows [cy - size // 2, cy - size // 2 + size) within the image (columns
    likewise). Works on any dtype (DARTS applies it after normalisation, where 0 is the mean colour).
    """
    if x.dim() != 4:
        raise DataError(f"cutout_batch needs (B, C, H, W), got {tuple(x.shape)}")
    if size < 0:
        raise DataError(f"cutout size must be >= 0, got {size}")
    if size == 0:
        return x
    _check_generator(generator, x.device)
    b, _, h, w = x.shape
    dev = x.device
    top = torch.randint(0, h, (b,), generator=generator, device=dev) - size // 2   # (B,) centre row - size // 2
    left = torch.randint(0, w, (b,), generator=generator, device=dev) - size // 2  # (B,)
    rows = torch.arange(h, device=dev)
    cols = torch.arange(w, device=dev)
    in_rows = (rows >= top[:, None]) & (rows < top[:, None] + size)     # (B, H)
    in_cols = (cols >= left[:, None]) & (cols < left[:, None] + size)   # (B, W)
    square = in_rows[:, :, None] & in_cols[:, None, :]                  # (B, H, W)
    return x.masked_fill(square[:, None], 0)


def _check_generator(generator: torch.Generator, device: torch.device) -> None:
    if not _same_device(generator.device, device):
        raise DataError(f"generator is on {generator.device} but the images are on {device}; "
                        f"create it with torch.Generator(device=...)")


def _same_device(a: torch.device | str, b: torch.device | str) -> bool:
    a, b = torch.device(a), torch.device(b)
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)
