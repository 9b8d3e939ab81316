"""CIFAR-10/100 python release folders, read through an unpickler that builds only numpy arrays."""
from __future__ import annotations

import codecs
import importlib
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError
from .images import SPLITS, ImageDataset

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
