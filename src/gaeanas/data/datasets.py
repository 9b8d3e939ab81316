"""Datasets by name or path (digits, image folders, CIFAR) via load_dataset; resizing, seeded subsets, splits."""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError, ResourceError
from ..memory import dataset_bytes, is_out_of_memory, require_memory
from .cifar import _find_cifar_folder, _load_cifar
from .download import REMOTE_DATASETS, _cache_root, _ensure_remote
from .folders import _load_image_folder, _split_folder
from .images import SPLITS, ImageDataset

__all__ = ["KNOWN_DATASETS", "DIGITS_TRAIN_SIZE", "has_test_split", "load_dataset", "seeded_subset", "split_in_two",
           "stratified_holdout"]

KNOWN_DATASETS = ("digits", "cifar10", "cifar100")
DIGITS_TRAIN_SIZE = 1500


# --------------------------------------------------------------------------- entry point


def load_dataset(spec: str = "digits", split: str = "train", resize: int | None = None,
                 cache_dir: str | os.PathLike | None = None, subset: int | None = None,
                 seed: int = 0) -> ImageDataset:
    """Load a dataset by name ("digits", "cifar10", "cifar100") or path, as uint8 CPU tensors.

    A path may be an image folder (one subfolder per class), a folder holding `train/` and
    `test/` image folders, or an official CIFAR-10/100 python release folder (or its parent).
    subset: keep seeded_subset(dataset, subset, seed); from an image folder without a cache of its whole
    decode, only those images are decoded.
    """
    if split not in SPLITS:
        raise DataError(f"split must be one of {list(SPLITS)}, got {split!r}")
    if resize is not None and (isinstance(resize, bool) or not isinstance(resize, int) or resize < 1):
        raise DataError(f"resize must be a positive integer or None, got {resize!r}")
    spec = os.fspath(spec)
    pick = None if subset is None else functools.partial(subset_indices, n=subset, seed=seed, name=spec)
    key = spec.lower()
    if key == "digits":
        ds = _load_digits(split)
    elif key in REMOTE_DATASETS:
        ds = _load_cifar(_ensure_remote(key, _cache_root(cache_dir)), split)
    else:
        return _load_path(spec, split, resize, cache_dir, pick)
    return _kept(_resize_dataset(ds, resize, key), pick)


def _kept(ds: ImageDataset, pick: Callable[[int], torch.Tensor] | None) -> ImageDataset:
    """ds, or the images that pick(len(ds)) keeps."""
    return ds if pick is None else ds.take(pick(len(ds)))


def _load_path(spec: str, split: str, resize: int | None, cache_dir: str | os.PathLike | None,
               pick: Callable[[int], torch.Tensor] | None) -> ImageDataset:
    """Dispatch a path spec to the CIFAR or the image-folder reader (which decodes only the images picked)."""
    path = Path(spec).expanduser()
    if not path.exists():
        raise DataError(f"unknown dataset {spec!r}: not a known name ({', '.join(_known_names())}) "
                        f"and no such file or folder: {path.absolute()}")
    if not path.is_dir():
        raise DataError(f"dataset path is not a folder: {path.absolute()}")
    cifar = _find_cifar_folder(path)
    if cifar is not None:
        return _kept(_resize_dataset(_load_cifar(cifar, split), resize, str(cifar)), pick)
    root = _split_folder(path, split)
    return _load_image_folder(root, resize, _cache_root(cache_dir), pick)


def _known_names() -> list[str]:
    return sorted({"digits", *REMOTE_DATASETS})


# --------------------------------------------------------------------------- digits


def _load_digits(split: str) -> ImageDataset:
    """scikit-learn's bundled 8x8 digits; fixed seed-0 split of 1,500 train / 297 test."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise DataError("the 'digits' dataset needs scikit-learn: pip install scikit-learn") from err
    pixels, targets = _digits_arrays(load_digits)
    order = np.random.RandomState(0).permutation(len(pixels))  # legacy RNG: stable across numpy versions
    part = np.sort(order[:DIGITS_TRAIN_SIZE] if split == "train" else order[DIGITS_TRAIN_SIZE:])
    images = torch.from_numpy(pixels[part]).unsqueeze(1).expand(-1, 3, -1, -1).contiguous()
    return ImageDataset(images, torch.from_numpy(targets[part]), [str(c) for c in range(10)], "digits")


@functools.lru_cache(maxsize=1)
def _digits_arrays(load_digits: Callable[[], Any]) -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as uint8 (N, 8, 8) in 0..255, and their int64 labels (read once)."""
    bunch = load_digits()
    pixels = np.rint(np.asarray(bunch.images, dtype=np.float64) * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    return pixels, np.asarray(bunch.target, dtype=np.int64)


# --------------------------------------------------------------------------- resizing


# The float32 block one interpolation works on is kept under this many bytes (a chunk of images at a time).
_RESIZE_BLOCK_BYTES = 256 * 2**20


def _resize_dataset(ds: ImageDataset, resize: int | None, source: str, chunk: int = 4096) -> ImageDataset:
    """Bilinear, antialiased resize of every image to resize x resize (no-op when None or equal).

    Refused with ResourceError, before allocating, when the result and one float32 block do not fit.
    `source` names the dataset (its name or folder) in that message.
    """
    if resize is None or ds.image_size == (resize, resize):
        return ds
    channels = int(ds.images.shape[1])
    per_image = 4 * dataset_bytes(1, channels, resize, resize)  # float32 bytes of one resized image
    chunk = max(1, min(chunk, len(ds), _RESIZE_BLOCK_BYTES // per_image))
    # The uint8 result, plus one chunk's float32 interpolation output and its rounded copy (counted as float32).
    need = dataset_bytes(len(ds), channels, resize, resize) + 2 * chunk * per_image
    require_memory(need, f"resizing {len(ds):,} images of {source} to {resize}x{resize}", ds.images.device,
                   "use --resize N with a smaller N")
    try:
        out = _interpolate(ds.images, resize, chunk)
    except Exception as err:  # torch reports a failed allocation as a RuntimeError
        if not is_out_of_memory(err):
            raise
        raise ResourceError(f"ran out of memory resizing {len(ds):,} images of {source} to {resize}x{resize}; "
                            "use --resize N with a smaller N") from err
    return ImageDataset(out, ds.labels, ds.classes, ds.name)


def _interpolate(images: torch.Tensor, resize: int, chunk: int) -> torch.Tensor:
    """uint8 images resized to resize x resize, `chunk` images at a time through float32."""
    out = torch.empty((images.shape[0], images.shape[1], resize, resize), dtype=torch.uint8, device=images.device)
    for start in range(0, images.shape[0], chunk):
        block = images[start:start + chunk].float()
        block = F.interpolate(block, size=(resize, resize), mode="bilinear", align_corners=False, antialias=True)
        out[start:start + chunk] = block.round_().clamp_(0, 255).to(torch.uint8)
    return out


# --------------------------------------------------------------------------- subsets


def seeded_subset(ds: ImageDataset, n: int, seed: int) -> ImageDataset:
    """`n` distinct images drawn at random (reproducible from `seed`), kept in dataset order."""
    return ds.take(subset_indices(len(ds), n, seed, ds.name))


def subset_indices(total: int, n: int, seed: int, name: str) -> torch.Tensor:
    """The sorted indices of seeded_subset: n of range(total), drawn reproducibly from `seed`."""
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0 or n > total:
        raise DataError(f"subset size must be in 1..{total} for {name!r}, got {n!r}")
    return _seeded_perm(total, seed)[:n].sort().values


def split_in_two(ds: ImageDataset, seed: int, fraction: float = 0.5) -> tuple[ImageDataset, ImageDataset]:
    """Disjoint random halves (reproducible from `seed`); the first has round(fraction * N) images."""
    if not 0.0 < fraction < 1.0:
        raise DataError(f"split fraction must be strictly between 0 and 1, got {fraction!r}")
    k = round(fraction * len(ds))
    if k == 0 or k == len(ds):
        raise DataError(f"splitting {len(ds)} images at fraction {fraction} leaves one part empty")
    perm = _seeded_perm(len(ds), seed)
    return ds.take(perm[:k].sort().values), ds.take(perm[k:].sort().values)


def has_test_split(spec: str | os.PathLike) -> bool:
    """Whether a dataset has a test split of its own: the named datasets and CIFAR releases do, an image folder
    only when it holds `train/` and `test/`."""
    key = os.fspath(spec).lower()
    if key == "digits" or key in REMOTE_DATASETS:
        return True
    path = Path(spec).expanduser()
    if not path.is_dir():
        return False
    if _find_cifar_folder(path) is not None:
        return True
    try:
        return _split_folder(path, "test") != path
    except DataError:  # train/ without test/
        return False


def stratified_holdout(ds: ImageDataset, fraction: float, seed: int) -> tuple[ImageDataset, ImageDataset]:
    """(kept, held out): round(fraction * n) images of each class with n >= 2 held out (at least one), drawn with
    `seed`; every class keeps at least one image for training. Both parts keep dataset order."""
    if not 0.0 < fraction < 1.0:
        raise DataError(f"holdout fraction must be strictly between 0 and 1, got {fraction!r}")
    held = []
    for label in range(len(ds.classes)):
        members = (ds.labels == label).nonzero().flatten().cpu()
        if len(members) < 2:
            continue
        k = min(max(1, round(fraction * len(members))), len(members) - 1)
        held.append(members[_seeded_perm(len(members), seed + label)[:k]])
    if not held:
        raise DataError(f"{ds.name!r} has no class with 2 or more images: nothing can be held out for testing")
    mask = torch.zeros(len(ds), dtype=torch.bool)
    mask[torch.cat(held)] = True
    return ds.take((~mask).nonzero().flatten()), ds.take(mask.nonzero().flatten())


def _seeded_perm(n: int, seed: int) -> torch.Tensor:
    """A CPU permutation of range(n) from a private generator seeded with `seed`."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
