"""Image folders (one subfolder per class) read into uint8 tensors, with a cache of the decoded tensors."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import PIL
import torch
from PIL import Image

from ..errors import DataError, ResourceError
from ..memory import dataset_bytes, is_out_of_memory, require_memory
from .images import SPLITS, ImageDataset

__all__ = ["IMAGE_EXTENSIONS"]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
_FOLDER_CACHE_VERSION = "gaeanas-folder-cache-v2"
# What else decides the decoded pixels: conversion mode, resize filter, and the decoder's version.
_DECODE_OPTIONS = f"RGB|bilinear|Pillow-{PIL.__version__}"
# Peak memory of a decode, in dataset sizes (N x 3 x H x W bytes): the (N, H, W, 3) numpy buffer and the
# (N, 3, H, W) tensor that permute(...).contiguous() copies it into.
_DECODE_COPIES = 2
_DirId = tuple[int, int]  # (st_dev, st_ino) of a folder


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
    return path.is_dir() and any(_is_dir(e) and not e.name.startswith(".") for e in _list_folder(str(path)))


# --------------------------------------------------------------------------- scanning


def _scan_image_folder(root: Path) -> tuple[list[str], list[os.DirEntry], list[int]]:
    """Sorted class names, image files (sorted within each class, recursively) and their labels."""
    classes = sorted(e.name for e in _list_folder(str(root)) if not e.name.startswith(".") and _is_dir(e))
    root_id = _dir_id(str(root))
    files: list[os.DirEntry] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        found = _image_entries(root / name, root_id)
        if not found:
            log.warning("class folder %s holds no images", root / name)
        files.extend(found)
        labels.extend([label] * len(found))
    if not files:
        raise DataError(f"no images found in {root}: expected one subfolder per class holding files "
                        f"with extensions {', '.join(IMAGE_EXTENSIONS)} (any case)")
    return classes, files, labels


def _image_entries(folder: Path, root_id: _DirId) -> list[os.DirEntry]:
    """Image files under `folder`, recursively (following symlinks), sorted by path.

    Each walk keeps the folders above it; one that comes round again is a symlink loop (DataError).
    """
    out: list[os.DirEntry] = []
    stack: list[tuple[str, frozenset[_DirId], str]] = [(str(folder), frozenset({root_id}), str(folder))]
    while stack:
        path, above, link = stack.pop()
        ident = _dir_id(path)
        if ident in above:
            raise DataError(f"symlink loop in image folder: {link} leads back to {os.path.realpath(path)}, "
                            "a folder that contains it; remove the link")
        above = above | {ident}
        for entry in _list_folder(path):
            if entry.name.startswith("."):
                continue
            if _is_dir(entry):
                stack.append((entry.path, above, entry.path if entry.is_symlink() else link))
            elif entry.name.lower().endswith(IMAGE_EXTENSIONS) and _is_file(entry):
                out.append(entry)
    out.sort(key=lambda e: e.path)
    return out


def _list_folder(path: str) -> list[os.DirEntry]:
    """The entries of one folder; DataError naming it when it cannot be listed."""
    try:
        with os.scandir(path) as it:
            return list(it)
    except OSError as err:
        raise DataError(f"cannot list folder {path}: {_os_reason(err)}") from None


def _dir_id(path: str) -> _DirId:
    """(device, inode) of a folder, symlinks followed."""
    try:
        st = os.stat(path)
    except OSError as err:
        raise DataError(f"cannot read folder {path}: {_os_reason(err)}") from None
    return st.st_dev, st.st_ino


def _is_dir(entry: os.DirEntry) -> bool:
    """entry.is_dir() (symlinks followed); a link that cannot be resolved is a DataError naming it."""
    try:
        return entry.is_dir()
    except OSError as err:
        raise DataError(f"cannot read {entry.path}: {_os_reason(err)}") from None


def _is_file(entry: os.DirEntry) -> bool:
    """entry.is_file() (symlinks followed); a link that cannot be resolved is a DataError naming it."""
    try:
        return entry.is_file()
    except OSError as err:
        raise DataError(f"cannot read {entry.path}: {_os_reason(err)}") from None


def _os_reason(err: OSError) -> str:
    return err.strerror or type(err).__name__


# --------------------------------------------------------------------------- loading through the cache


def _load_image_folder(root: Path, resize: int | None, cache: Path,
                       pick: Callable[[int], torch.Tensor] | None = None) -> ImageDataset:
    """Decode a class-per-subfolder image folder, through the decoded-tensor cache.

    pick: n -> the indices (of the n images in folder order) to keep. Without a cache of the whole folder only
    those images are decoded (and nothing is cached); with one, they are taken from it.
    """
    classes, files, labels = _scan_image_folder(root)
    height, width = (resize, resize) if resize is not None else _header_size(files[0].path)
    key = _folder_cache_key(root, classes, files, resize)
    cache_file = cache / "folders" / f"{key}.pt"
    name = str(root.resolve())
    label_tensor = torch.tensor(labels, dtype=torch.int64)
    expected = {"key": key, "classes": classes, "labels": label_tensor, "size": (height, width)}
    images = _read_folder_cache(cache_file, expected)
    if images is not None:
        log.debug("using decoded images cached in %s", cache_file)
        ds = ImageDataset(images, label_tensor, classes, name)
        return ds if pick is None else ds.take(pick(len(ds)))
    if pick is not None:
        idx = pick(len(files))
        files, label_tensor = [files[i] for i in idx.tolist()], label_tensor[idx]
    _require_decode_memory(root, len(files), height, width, resize)
    start = time.perf_counter()
    try:
        images = _decode_images([e.path for e in files], resize)
    except Exception as err:  # numpy raises MemoryError, torch a RuntimeError
        if not is_out_of_memory(err):
            raise
        raise ResourceError(f"ran out of memory decoding {len(files):,} images at {width}x{height} from {root}; "
                            "use --resize N with a smaller N") from err
    log.info("decoded %d images from %s in %.1fs", len(files), root, time.perf_counter() - start)
    ds = ImageDataset(images, label_tensor, classes, name)
    if pick is None:
        _write_folder_cache(cache_file, key, ds)
    return ds


def _header_size(path: str) -> tuple[int, int]:
    """(height, width) of an image, from its header (no pixels decoded)."""
    try:
        with Image.open(path) as img:
            width, height = img.size
    except MemoryError as err:
        raise ResourceError(f"ran out of memory reading the header of image {path}") from err
    except Exception as err:  # Pillow raises many types on damaged files
        raise DataError(f"cannot read image {path}: {type(err).__name__}: {_one_line(err)}") from err
    return height, width


def _require_decode_memory(root: Path, n: int, height: int, width: int, resize: int | None) -> None:
    """ResourceError, before anything is decoded, when decoding would not fit in memory."""
    hint = ("use --resize N with a smaller N" if resize is not None
            else "use --resize N to decode the images at N x N pixels")
    require_memory(_DECODE_COPIES * dataset_bytes(n, 3, height, width),
                   f"decoding {n:,} images at {width}x{height} from {root}", torch.device("cpu"), hint)


def _folder_cache_key(root: Path, classes: list[str], files: list[os.DirEntry], resize: int | None) -> str:
    """sha256 over the cache version, decode options, resize, root, class list, and every image's path
    relative to the root (its class folder included), size and mtime_ns: any change is a new key."""
    digest = hashlib.sha256()
    head = [_FOLDER_CACHE_VERSION, _DECODE_OPTIONS, str(resize), os.fsdecode(root.resolve()), json.dumps(classes)]
    digest.update("\0".join(head).encode("utf-8", "surrogateescape") + b"\n")
    for entry in files:
        try:
            st = entry.stat()
        except OSError as err:
            raise DataError(f"cannot read image {entry.path}: {_os_reason(err)}") from None
        rel = os.fsencode(os.path.relpath(entry.path, root))
        digest.update(rel + f"\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _checksum(images: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> str:
    """sha256 of the images' shape and bytes, the labels' bytes and the class names."""
    digest = hashlib.sha256(f"{tuple(images.shape)}|{json.dumps(classes)}|".encode())
    digest.update(images.contiguous().numpy().data)
    digest.update(labels.to(torch.int64).contiguous().numpy().data)
    return digest.hexdigest()


def _read_folder_cache(path: Path, expected: dict[str, Any]) -> torch.Tensor | None:
    """The cached images at `path`, or None when absent; a damaged or mismatched file is logged and ignored
    (the caller decodes again and overwrites it)."""
    if not path.is_file():
        return None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
        problem = _cache_problem(data, expected)
    except Exception as err:  # a damaged cache is only a missed shortcut
        problem = f"unreadable: {type(err).__name__}: {_one_line(err)}"
    if problem is None:
        return data["images"]
    log.warning("ignoring damaged dataset cache %s (%s); decoding the images again", path, problem)
    return None


def _cache_problem(data: Any, expected: dict[str, Any]) -> str | None:
    """Why a loaded cache file cannot be used, or None when it matches `expected` and its checksum."""
    if not isinstance(data, dict) or data.get("version") != _FOLDER_CACHE_VERSION or data.get("key") != expected["key"]:
        return "not a cache file of this version and key"
    images, labels = data.get("images"), data.get("labels")
    n = len(expected["labels"])
    if not (isinstance(images, torch.Tensor) and images.dtype == torch.uint8 and images.dim() == 4
            and tuple(images.shape) == (n, 3, *expected["size"])):
        return f"images are not uint8 ({n}, 3, {expected['size'][0]}, {expected['size'][1]})"
    if not (isinstance(labels, torch.Tensor) and torch.equal(labels, expected["labels"])):
        return "labels differ from the folder's"
    if data.get("classes") != expected["classes"]:
        return "class names differ from the folder's"
    if data.get("checksum") != _checksum(images, labels, expected["classes"]):
        return "checksum mismatch"
    return None


def _write_folder_cache(path: Path, key: str, ds: ImageDataset) -> None:
    """Save the decoded tensors and their checksum atomically; failure to write is logged, not raised."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    record = {"version": _FOLDER_CACHE_VERSION, "key": key, "images": ds.images, "labels": ds.labels,
              "classes": ds.classes, "checksum": _checksum(ds.images, ds.labels, ds.classes)}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(record, tmp)
        os.replace(tmp, path)
    except OSError as err:
        log.warning("could not write dataset cache %s: %s", path, err)
        tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------- decoding


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
    """One image file as an RGB uint8 (H, W, 3) array; a damaged file is a DataError, running out of
    memory a ResourceError, each naming the file."""
    size = "its own size"
    try:
        with Image.open(path) as img:
            size = f"{img.size[0]}x{img.size[1]}"
            img = img.convert("RGB") if img.mode != "RGB" else img
            if resize is not None and img.size != (resize, resize):
                size = f"{resize}x{resize}"
                img = img.resize((resize, resize), Image.Resampling.BILINEAR)
            arr = np.asarray(img)
    except MemoryError as err:
        raise ResourceError(f"ran out of memory decoding image {path} at {size}; "
                            "use --resize N with a smaller N") from err
    except Exception as err:  # Pillow raises many types on damaged files
        raise DataError(f"cannot read image {path}: {type(err).__name__}: {_one_line(err)}") from err
    return arr


def _one_line(err: BaseException) -> str:
    """An exception's message with its line breaks folded into spaces."""
    return " ".join(str(err).split()) or type(err).__name__
