"""The ImageDataset container: uint8 (N, 3, H, W) images and int64 labels, on any device."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import DataError

__all__ = ["ImageDataset", "SPLITS"]

SPLITS = ("train", "test")


@dataclass(repr=False)
class ImageDataset:
    """Images as one uint8 (N, 3, H, W) tensor with int64 labels, on any device."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    name: str

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise DataError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.dim() != 1 or self.labels.shape[0] != self.images.shape[0]:
            raise DataError(f"labels must have shape ({self.images.shape[0]},), got {tuple(self.labels.shape)}")
        if self.labels.is_floating_point() or self.labels.dtype == torch.bool:
            raise DataError(f"labels must be integers, got {self.labels.dtype}")
        if self.labels.device != self.images.device:
            raise DataError(f"images are on {self.images.device} but labels on {self.labels.device}")
        self.images = self.images.contiguous()
        self.labels = self.labels.to(torch.int64)
        self.classes = list(self.classes)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        h, w = self.image_size
        return (f"ImageDataset(name={self.name!r}, n={len(self)}, size={h}x{w}, "
                f"classes={len(self.classes)}, device={self.images.device})")

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of every image."""
        return int(self.images.shape[2]), int(self.images.shape[3])

    @property
    def device(self) -> torch.device:
        """The device the tensors live on."""
        return self.images.device

    def to(self, device: torch.device | str) -> ImageDataset:
        """The dataset with its tensors on `device` (itself when they are already there, like Tensor.to)."""
        images, labels = self.images.to(device), self.labels.to(device)
        if images is self.images and labels is self.labels:
            return self
        return ImageDataset(images, labels, self.classes, self.name)

    def take(self, indices: torch.Tensor) -> ImageDataset:
        """The subset at `indices` (an integer index tensor, any device), in that order."""
        idx = torch.as_tensor(indices).to(self.images.device)
        return ImageDataset(self.images[idx], self.labels[idx], self.classes, self.name)
