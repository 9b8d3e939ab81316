"""Image datasets as uint8 tensors (digits, image folders, CIFAR) and a device-resident batch loader."""
from __future__ import annotations

import codecs
import functools
import hashlib
import http.client
import importlib
import logging
import math
import os
import pickle
import shutil
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .errors import DataError

__all__ = [
    "ImageDataset", "RemoteDataset", "REMOTE_DATASETS", "KNOWN_DATASETS", "IMAGE_EXTENSIONS",
    "default_cache_dir", "load_dataset", "seeded_subset", "split_in_two", "channel_stats",
    "augment_batch", "cutout_batch", "normalize", "DeviceLoader",
]

log = logging.getLogger(__name__)

SPLITS = ("train", "test")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
DIGITS_TRAIN_SIZE = 1500
_FOLDER_CACHE_VERSION = "gaeanas-folder-cache-v1"


# --------------------------------------------------------------------------- dataset container


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


# --------------------------------------------------------------------------- registry and cache


@dataclass(frozen=True)
class RemoteDataset:
    """Where a downloadable dataset lives, its archive's MD5, and the folder the archive unpacks to."""

    url: str
    md5: str
    folder: str


REMOTE_DATASETS: dict[str, RemoteDataset] = {
    "cifar10": RemoteDataset(url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                             md5="c58f30108f718f92721af3b95e74349a", folder="cifar-10-batches-py"),
    "cifar100": RemoteDataset(url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                              md5="eb9058c3a382ffc7106e4002c42a8d85", folder="cifar-100-python"),
}
KNOWN_DATASETS = ("digits", "cifar10", "cifar100")


def default_cache_dir() -> Path:
    """`$GAEANAS_CACHE`, or `~/.cache/gaeanas`."""
    env = os.environ.get("GAEANAS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "gaeanas"


def _cache_root(cache_dir: str | os.PathLike | None) -> Path:
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


# --------------------------------------------------------------------------- entry point


def load_dataset(spec: str = "digits", split: str = "train", resize: int | None = None,
                 cache_dir: str | os.PathLike | None = None) -> ImageDataset:
    """Load a dataset by name ("digits", "cifar10", "cifar100") or path, as uint8 CPU tensors.

    A path may be an image folder (one subfolder per class), a folder holding `train/` and
    `test/` image folders, or an official CIFAR-10/100 python release folder (or its parent).
    """
    if split not in SPLITS:
        raise DataError(f"split must be one of {list(SPLITS)}, got {split!r}")
    if resize is not None and (isinstance(resize, bool) or not isinstance(resize, int) or resize < 1):
        raise DataError(f"resize must be a positive integer or None, got {resize!r}")
    spec = os.fspath(spec)
    key = spec.lower()
    if key == "digits":
        ds = _load_digits(split)
    elif key in REMOTE_DATASETS:
        folder = _ensure_remote(key, _cache_root(cache_dir))
        ds = _load_cifar(folder, split)
    else:
        return _load_path(spec, split, resize, cache_dir)
    return _resize_dataset(ds, resize)


def _load_path(spec: str, split: str, resize: int | None,
               cache_dir: str | os.PathLike | None) -> ImageDataset:
    """Dispatch a path spec to the CIFAR or the image-folder reader."""
    path = Path(spec).expanduser()
    if not path.exists():
        raise DataError(f"unknown dataset {spec!r}: not a known name ({', '.join(_known_names())}) "
                        f"and no such file or folder: {path.absolute()}")
    if not path.is_dir():
        raise DataError(f"dataset path is not a folder: {path.absolute()}")
    cifar = _find_cifar_folder(path)
    if cifar is not None:
        return _resize_dataset(_load_cifar(cifar, split), resize)
    root = _split_folder(path, split)
    return _load_image_folder(root, resize, _cache_root(cache_dir))


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


# --------------------------------------------------------------------------- image folders


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


# --------------------------------------------------------------------------- CIFAR python releases

_CIFAR10_DIR, _CIFAR100_DIR = "cifar-10-batches-py", "cifar-100-python"


def _find_cifar_folder(path: Path) -> Path | None:
    """The CIFAR release folder at or directly inside `path`, or None."""
    if _cifar_kind(path) is not None:
        return path
    found = [path / d for d in (_CIFAR10_DIR, _CIFAR100_DIR) if (path / d).is_dir()]
    if len(found) > 1:
        raise DataError(f"{path} holds both {_CIFAR10_DIR} and {_CIFAR100_DIR}; pass one of them")
    return found[0] if found else None


def _cifar_kind(path: Path) -> str | None:
    """"cifar10", "cifar100" or None, from a folder's name or files."""
    if path.name == _CIFAR10_DIR or any((path / f).is_file() for f in ("batches.meta", "data_batch_1", "test_batch")):
        return "cifar10"
    if path.name == _CIFAR100_DIR or ((path / "meta").is_file() and any((path / f).is_file() for f in SPLITS)):
        return "cifar100"
    return None


def _load_cifar(folder: Path, split: str) -> ImageDataset:
    """Read the train or test split of a CIFAR-10/100 python release folder."""
    kind = _cifar_kind(folder)
    if kind == "cifar10":
        names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        meta_file, names_key, labels_key = "batches.meta", "label_names", "labels"
    else:
        names = [split]
        meta_file, names_key, labels_key = "meta", "fine_label_names", "fine_labels"
    for file in [*names, meta_file]:
        if not (folder / file).is_file():
            raise DataError(f"CIFAR folder {folder} is missing {file} ({folder / file})")
    classes = [_as_str(c) for c in _field(_unpickle(folder / meta_file), names_key, folder / meta_file)]
    parts = [_cifar_batch(folder / n, labels_key) for n in names]
    images = torch.from_numpy(np.concatenate([p[0] for p in parts])).view(-1, 3, 32, 32)
    labels = torch.from_numpy(np.concatenate([p[1] for p in parts]))
    return ImageDataset(images.contiguous(), labels, classes, kind)


def _cifar_batch(path: Path, labels_key: str) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 (N, 3072) rows of R, G, B planes; int64 labels) from one batch file."""
    batch = _unpickle(path)
    data = np.asarray(_field(batch, "data", path))
    labels = np.asarray(_field(batch, labels_key, path), dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] != labels.shape[0]:
        raise DataError(f"{path}: expected uint8 data of shape (N, 3072) and N labels, "
                        f"got {data.dtype} {data.shape} and {labels.shape[0]} labels")
    return data, labels


def _field(record: Any, key: str, path: Path) -> Any:
    """record[b"key"] or record["key"]; DataError naming the file if neither exists."""
    if isinstance(record, dict):
        for k in (key.encode(), key):
            if k in record:
                return record[k]
    raise DataError(f"{path} has no {key!r} entry; is it a CIFAR python release file?")


def _as_str(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class _CifarUnpickler(pickle.Unpickler):
    """Unpickler that only builds numpy arrays and plain containers, never arbitrary objects."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): ("multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"): ("multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"): ("multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"): ("multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"): ("numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"): ("numeric", "_frombuffer"),
        ("numpy", "ndarray"): ("numpy", "ndarray"),
        ("numpy", "dtype"): ("numpy", "dtype"),
        ("_codecs", "encode"): ("codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        target = self._ALLOWED.get((module, name))
        if target is None:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        where, attr = target
        if where == "numpy":
            return getattr(np, attr)
        if where == "codecs":
            return codecs.encode
        return getattr(_numpy_core(where), attr)


def _numpy_core(submodule: str) -> Any:
    """numpy's private core submodule, under its numpy 2 or numpy 1 name."""
    try:
        return importlib.import_module(f"numpy._core.{submodule}")
    except ImportError:
        return importlib.import_module(f"numpy.core.{submodule}")


def _unpickle(path: Path) -> Any:
    """Load a CIFAR pickle (numpy arrays and builtins only)."""
    try:
        with open(path, "rb") as fh:
            return _CifarUnpickler(fh, encoding="bytes").load()
    except Exception as err:  # damaged pickles fail in many ways
        raise DataError(f"cannot read CIFAR file {path}: {err}") from err


# --------------------------------------------------------------------------- downloads


def _ensure_remote(name: str, cache: Path) -> Path:
    """The unpacked release folder for a registered dataset, downloading it if absent."""
    entry = REMOTE_DATASETS[name]
    target = cache / entry.folder
    if target.is_dir():
        return target
    archive = cache / "downloads" / _url_filename(entry.url)
    if not archive.is_file():
        _download(entry.url, archive, entry.md5)
    _extract_folder(archive, entry.folder, target)
    archive.unlink(missing_ok=True)
    return target


def _url_filename(url: str) -> str:
    name = PurePosixPath(urllib.parse.urlsplit(url).path).name
    return name or "download"


def _download(url: str, dest: Path, md5: str) -> None:
    """Fetch `url` into `dest.part`, check its MD5, then rename it to `dest`."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    log.info("downloading %s to %s", url, dest)
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as out:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as err:
        part.unlink(missing_ok=True)
        raise DataError(f"could not download {url}: {err}") from err
    if digest.hexdigest() != md5.lower():
        part.unlink(missing_ok=True)
        raise DataError(f"checksum mismatch for {url}: expected md5 {md5}, got {digest.hexdigest()}; "
                        f"the partial file was deleted")
    os.replace(part, dest)


def _extract_folder(archive: Path, folder: str, target: Path) -> None:
    """Unpack `archive` (tar) safely and move its top-level `folder` to `target`."""
    tmp = target.parent / f".{target.name}.{os.getpid()}.unpack"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for m in members:
                _check_member(m, archive)
            kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(tmp, members=members, **kwargs)
        if not (tmp / folder).is_dir():
            raise DataError(f"archive {archive} does not contain the folder {folder}/")
        try:
            os.replace(tmp / folder, target)
        except OSError:
            if not target.is_dir():  # else another process unpacked it first
                raise
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DataError(f"cannot unpack {archive}: {err}") from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    """Reject absolute paths, `..`, links and special files."""
    name = member.name
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or os.path.isabs(name) or ".." in parts or (parts and ":" in parts[0]):
        raise DataError(f"refusing to unpack {archive}: unsafe member path {name!r}")
    if not (member.isfile() or member.isdir()):
        raise DataError(f"refusing to unpack {archive}: member {name!r} is a link or special file")


# --------------------------------------------------------------------------- resizing


def _resize_dataset(ds: ImageDataset, resize: int | None, chunk: int = 4096) -> ImageDataset:
    """Bilinear, antialiased resize of every image to resize x resize (no-op when None or equal)."""
    if resize is None or ds.image_size == (resize, resize):
        return ds
    out = torch.empty((len(ds), ds.images.shape[1], resize, resize), dtype=torch.uint8, device=ds.images.device)
    for start in range(0, len(ds), chunk):
        block = ds.images[start:start + chunk].float()
        block = F.interpolate(block, size=(resize, resize), mode="bilinear", align_corners=False, antialias=True)
        out[start:start + chunk] = block.round_().clamp_(0, 255).to(torch.uint8)
    return ImageDataset(out, ds.labels, ds.classes, ds.name)


# --------------------------------------------------------------------------- subsets


def seeded_subset(ds: ImageDataset, n: int, seed: int) -> ImageDataset:
    """`n` distinct images drawn at random (reproducible from `seed`), kept in dataset order."""
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0 or n > len(ds):
        raise DataError(f"subset size must be in 1..{len(ds)} for {ds.name!r}, got {n!r}")
    idx = _seeded_perm(len(ds), seed)[:n].sort().values
    return ds.take(idx)


def split_in_two(ds: ImageDataset, seed: int, fraction: float = 0.5) -> tuple[ImageDataset, ImageDataset]:
    """Disjoint random halves (reproducible from `seed`); the first has round(fraction * N) images."""
    if not 0.0 < fraction < 1.0:
        raise DataError(f"split fraction must be strictly between 0 and 1, got {fraction!r}")
    k = round(fraction * len(ds))
    if k == 0 or k == len(ds):
        raise DataError(f"splitting {len(ds)} images at fraction {fraction} leaves one part empty")
    perm = _seeded_perm(len(ds), seed)
    return ds.take(perm[:k].sort().values), ds.take(perm[k:].sort().values)


def _seeded_perm(n: int, seed: int) -> torch.Tensor:
    """A CPU permutation of range(n) from a private generator seeded with `seed`."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))


# --------------------------------------------------------------------------- tensor ops


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


# --------------------------------------------------------------------------- loader


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
