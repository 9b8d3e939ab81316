"""Image folders (one subfolder per class) read into uint8 tensors, with a cache of the decoded tensors."""
from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..errors import DataError
from .images import SPLITS, ImageDataset

__all__ = ["IMAGE_EXTENSIONS"]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
_FOLDER_CACHE_VERSION = "gaeanas-folder-cache-v1"


def _split_folder(path: Path, split: str) -> Path:
    """`path/<split>` when `path` holds train/test image folders, else `path` itself."""
    has_split_layout = any(_is_class_root(path / s) for s in SPLITS)
    if not has_split_layout:
        return path
    chosen = path / split
    if not chosen.is_dir():
        raise DataError(f"{path} has train/test folders but no {split!r} folder: {chosen} is missing")
    return chosen


def _is_class_root(path: Path) -> bool:
    """Whether `path` is a folder whose entries include class subfolders."""
    return path.is_dir() and any(p.is_dir() and not p.name.startswith(".") for p in path.iterdir())


def _scan_image_folder(root: Path) -> tuple[list[str], list[os.DirEntry], list[int]]:
    """Sorted class names, image files (sorted within each class, recursively) and their labels."""
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    files: list[os.DirEntry] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        found = _image_entries(root / name)
        if not found:
            log.warning("class folder %s holds no images", root / name)
        files.extend(found)
        labels.extend([label] * len(found))
    if not files:
        raise DataError(f"no images found in {root}: expected one subfolder per class holding files "
                        f"with extensions {', '.join(IMAGE_EXTENSIONS)} (any case)")
    return classes, files, labels


def _image_entries(folder: Path) -> list[os.DirEntry]:
    """Image files under `folder`, recursively, sorted by path."""
    out: list[os.DirEntry] = []
    stack = [str(folder)]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    stack.append(entry.path)
                elif entry.name.lower().endswith(IMAGE_EXTENSIONS) and entry.is_file():
                    out.append(entry)
    out.sort(key=lambda e: e.path)
    return out


def _folder_cache_path(cache: Path, root: Path, resize: int | None, files: list[os.DirEntry]) -> Path:
    """`<cache>/folders/<sha1>.pt`, keyed on path, resize, file count, total bytes and newest mtime."""
    stats = [e.stat() for e in files]
    total = sum(s.st_size for s in stats)
    newest = max(s.st_mtime_ns for s in stats)
    key = f"{_FOLDER_CACHE_VERSION}|{root.resolve()}|{resize}|{len(files)}|{total}|{newest}"
    return cache / "folders" / f"{hashlib.sha1(key.encode()).hexdigest()}.pt"


def _load_image_folder(root: Path, resize: int | None, cache: Path) -> ImageDataset:
    """Decode a class-per-subfolder image folder, through the decoded-tensor cache."""
    classes, files, labels = _scan_image_folder(root)
    cache_file = _folder_cache_path(cache, root, resize, files)
    name = str(root.resolve())
    cached = _read_folder_cache(cache_file, len(files))
    if cached is not None:
        log.debug("using decoded images cached in %s", cache_file)
        return ImageDataset(cached["images"], cached["labels"], cached["classes"], name)
    start = time.perf_counter()
    images = _decode_images([e.path for e in files], resize)
    log.info("decoded %d images from %s in %.1fs", len(files), root, time.perf_counter() - start)
    ds = ImageDataset(images, torch.tensor(labels, dtype=torch.int64), classes, name)
    _write_folder_cache(cache_file, ds)
    return ds


def _read_folder_cache(path: Path, n: int) -> dict[str, Any] | None:
    """The cached tensors at `path`, or None when absent or unreadable."""
    if not path.is_file():
        return None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
        if data["images"].dtype == torch.uint8 and data["images"].shape[0] == n == data["labels"].shape[0]:
            return data
        log.warning("ignoring inconsistent dataset cache %s", path)
    except Exception as err:  # a damaged cache is only a missed shortcut
        log.warning("ignoring unreadable dataset cache %s: %s", path, err)
    return None


def _write_folder_cache(path: Path, ds: ImageDataset) -> None:
    """Save the decoded tensors atomically; failure to write is logged, not raised."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"images": ds.images, "labels": ds.labels, "classes": ds.classes}, tmp)
        os.replace(tmp, path)
    except OSError as err:
        log.warning("could not write dataset cache %s: %s", path, err)
        tmp.unlink(missing_ok=True)


def _decode_images(paths: list[str], resize: int | None) -> torch.Tensor:
    """Decode image files into one uint8 (N, 3, H, W) tensor; all must share a size unless resized."""
    first = _decode_one(paths[0], resize)
    out = np.empty((len(paths), *first.shape), dtype=np.uint8)
    out[0] = first
    for i in range(1, len(paths)):
        arr = _decode_one(paths[i], resize)
        if arr.shape != first.shape:
            raise DataError(
                f"image {paths[i]} is {_wh(arr)} but {paths[0]} is {_wh(first)} (width x height); "
                f"images of mixed sizes need resizing, e.g. --resize N (resize=N)")
        out[i] = arr
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def _wh(arr: np.ndarray) -> str:
    return f"{arr.shape[1]}x{arr.shape[0]}"


def _decode_one(path: str, resize: int | None) -> np.ndarray:
    """One image file as an RGB uint8 (H, W, 3) array."""
    try:
        with Image.open(path) as img:
            img = img.convert("RGB") if img.mode != "RGB" else img
            if resize is not None and img.size != (resize, resize):
                img = img.resize((resize, resize), Image.Resampling.BILINEAR)
            arr = np.asarray(img)
    except Exception as err:  # Pillow raises many types on damaged files
        raise DataError(f"cannot read image {path}: {type(err).__name__}: {err}") from err
    return arr
