"""DeviceLoader: the whole dataset as a tensor on the device, batches shuffled and augmented there."""
from __future__ import annotations

import math
from typing import Iterator

import torch

from ..errors import DataError
from .augment import _affine, _check_generator, augment_batch, channel_stats, cutout_batch
from .images import ImageDataset

__all__ = ["DeviceLoader"]


class DeviceLoader:
    """Batches from an ImageDataset held on the device; shuffling and augmentation on the device."""

    def __init__(self, ds: ImageDataset, batch_size: int, generator: torch.Generator, *,
                 augment: bool = True, crop_pad: int = 4, flip: bool = True, mean: torch.Tensor | None = None,
                 std: torch.Tensor | None = None, shuffle: bool = True, drop_last: bool = False,
                 channels_last: bool = False, cutout: int = 0) -> None:
        """`augment` turns on random crops (padding `crop_pad`) and, if `flip`, random mirroring;
        `cutout` > 0 zeroes a cutout x cutout pixel square of each normalised image (0: off)."""
        if crop_pad < 0:
            raise DataError(f"crop_pad must be >= 0, got {crop_pad}")
        if cutout < 0:
            raise DataError(f"cutout must be >= 0, got {cutout}")
        if batch_size < 1:
            raise DataError(f"batch_size must be >= 1, got {batch_size}")
        if len(ds) == 0:
            raise DataError(f"dataset {ds.name!r} is empty")
        if drop_last and batch_size > len(ds):
            raise DataError(f"batch_size {batch_size} exceeds the {len(ds)} images of {ds.name!r} with drop_last")
        _check_generator(generator, ds.images.device)
        if mean is None or std is None:
            stats = channel_stats(ds.images)
            mean = stats[0] if mean is None else mean
            std = stats[1] if std is None else std
        std_t = torch.as_tensor(std, dtype=torch.float32)
        if not bool(torch.isfinite(std_t).all() and (std_t > 0).all()):
            raise DataError(f"std must be finite and positive per channel, got {std_t.tolist()}")
        self.ds, self.batch_size, self.generator = ds, batch_size, generator
        self.augment, self.crop_pad, self.flip, self.shuffle = augment, crop_pad, flip, shuffle
        self.drop_last, self.channels_last, self.cutout = drop_last, channels_last, cutout
        self.mean = torch.as_tensor(mean, dtype=torch.float32).to(ds.images.device)
        self.std = std_t.to(ds.images.device)
        self._scale, self._shift = _affine(self.mean, self.std, ds.images.device)

    def __len__(self) -> int:
        n, b = len(self.ds), self.batch_size
        return n // b if self.drop_last else math.ceil(n / b)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of (x float32 normalised (B, C, H, W), y int64 (B,))."""
        n, dev = len(self.ds), self.ds.images.device
        order = (torch.randperm(n, generator=self.generator, device=dev) if self.shuffle
                 else torch.arange(n, device=dev))
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            yield self._batch(idx)

    def _batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.ds.images[idx]
        if self.augment:
            x = augment_batch(x, self.generator, crop_pad=self.crop_pad, flip=self.flip)
        x = x.to(torch.float32).mul_(self._scale).sub_(self._shift)
        if self.cutout:
            x = cutout_batch(x, self.cutout, self.generator)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, self.ds.labels[idx]

    def forever(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches without end, epoch after epoch (each epoch freshly shuffled)."""
        while True:
            yield from self
