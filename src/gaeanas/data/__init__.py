"""Image datasets as uint8 tensors (digits, image folders, CIFAR) and a device-resident batch loader."""
from __future__ import annotations

from .augment import augment_batch, channel_stats, cutout_batch, normalize
from .datasets import (DIGITS_TRAIN_SIZE, KNOWN_DATASETS, has_test_split, load_dataset, seeded_subset, split_in_two,
                       stratified_holdout)
from .download import REMOTE_DATASETS, RemoteDataset, default_cache_dir
from .folders import IMAGE_EXTENSIONS
from .images import SPLITS, ImageDataset
from .loader import DeviceLoader

__all__ = [
    "ImageDataset", "RemoteDataset", "REMOTE_DATASETS", "KNOWN_DATASETS", "IMAGE_EXTENSIONS",
    "default_cache_dir", "has_test_split", "load_dataset", "seeded_subset", "split_in_two", "stratified_holdout", "channel_stats",
    "augment_batch", "cutout_batch", "normalize", "DeviceLoader", "SPLITS", "DIGITS_TRAIN_SIZE",
]
