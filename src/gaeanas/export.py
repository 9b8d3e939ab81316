"""A trained network exported as one `torch.export` program with its preprocessing (loads with torch alone), and
predictions from it: top-k classes per image, accuracy and a confusion matrix over a class-folder tree."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from .data.folders import IMAGE_EXTENSIONS, _decode_one
from .errors import ConfigError, DataError, RunDirError
from .rundir import CHECKPOINT_FILE, CONFIG_FILE, RESULT_FILE, DamagedCheckpoint, flag, load_checkpoint, read_json
from .train import build_network, load_cell, load_train_config

MODEL_FILE, META_FILE = "model.pt2", "model.json"
FORMAT = "gaeanas-export 1"
MAX_BATCH = 65536  # the exported program takes any batch size from 1 to this


class Preprocessed(nn.Module):
    """The network behind its input normalisation: float images in [0, 1], (N, C, H, W) -> class logits."""

    def __init__(self, network: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.network = network
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network((images - self.mean) / self.std)[0]


def trained_network(run_dir: str | os.PathLike) -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    """(network with its final weights in eval mode on the CPU, the run's config values, its result) of a finished
    `gaeanas train` run directory."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file() and (run_dir / "seeds.json").is_file():
        seeds = sorted(p.name for p in run_dir.glob("seed*") if p.is_dir())
        raise RunDirError(f"{run_dir} holds several seeds' trainings; export one of them, e.g. {run_dir / seeds[0]}"
                          if seeds else f"{run_dir} holds no finished seed yet")
    cfg = load_train_config(run_dir)
    if not (run_dir / RESULT_FILE).is_file():
        raise RunDirError(f"{run_dir} has not finished training (no {RESULT_FILE}); finish it with "
                          f"gaeanas train --resume {run_dir}")
    result = read_json(run_dir / RESULT_FILE)
    if "normalisation" not in result:
        raise RunDirError(f"{run_dir} was trained by a gaeanas before 0.4, whose result.json lacks the input "
                          "normalisation an export needs; train it again")
    try:
        state = load_checkpoint(run_dir / CHECKPOINT_FILE)
    except FileNotFoundError:
        raise RunDirError(f"{run_dir} has no {CHECKPOINT_FILE}: the trained weights are missing") from None
    except DamagedCheckpoint as err:
        raise RunDirError(f"{run_dir / CHECKPOINT_FILE} is damaged ({err})") from None
    if state["epoch"] != result["epochs"]:
        raise RunDirError(f"{run_dir / CHECKPOINT_FILE} is from epoch {state['epoch']}, not the last "
                          f"({result['epochs']})")
    network = build_network(cfg, load_cell(cfg), len(result["classes"]))
    network.load_state_dict(state["model"])
    network.eval()
    return network.to(memory_format=torch.contiguous_format), cfg.record(), result


def train_command(config: dict[str, Any]) -> str:
    """The `gaeanas train` command line that gives a training these settings."""
    parts = ["gaeanas", "train"]
    for name, value in config.items():
        if value is None or name == "device":
            continue
        if isinstance(value, bool):
            parts.append(flag(name) if value else "--no-" + flag(name)[2:])
        else:
            text = str(value)
            parts += [flag(name), f"'{text}'" if any(c in text for c in " |+()") else text]
    return " ".join(parts)


def export_model(run_dir: str | os.PathLike, out_dir: str | os.PathLike, command: str | None = None
                 ) -> dict[str, Any]:
    """Write out_dir/model.pt2 (a `torch.export` program: normalisation and network, float images in [0, 1] in,
    logits out; any batch size) and out_dir/model.json (genotype, classes, input size and preprocessing, test
    accuracy, how it was made).

    The folder appears whole or not at all. The saved file is loaded back and checked against the network before
    the folder is put in place. Returns model.json's content.
    """
    network, config, result = trained_network(run_dir)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} exists and is not empty; give another --out or remove it")
    size = result["image_size"]
    model = Preprocessed(network, **result["normalisation"]).eval()
    example = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(0))
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    with torch.no_grad():
        program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
        expected = model(example)
    meta = {
        "format": FORMAT, "file": MODEL_FILE, "genotype": result["genotype"], "space": result.get("space", "darts"),
        "classes": result["classes"], "input": {"channels": 3, "size": size, "range": [0.0, 1.0],
                                               "resize": config.get("resize"), "mode": "RGB"},
        "normalisation": result["normalisation"], "test_accuracy": result["final_test_acc"],
        "test_split": result.get("test_split"), "parameters_m": result["parameters_m"],
        "trained_by": train_command(config), "exported_by": command, "run_dir": str(Path(run_dir).resolve()),
        "torch": torch.__version__,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        torch.export.save(program, staging / MODEL_FILE)
        reloaded = torch.export.load(staging / MODEL_FILE).module()
        with torch.no_grad():
            if not torch.allclose(reloaded(example), expected, rtol=1e-4, atol=1e-5):
                raise RunDirError("the exported model's outputs differ from the trained network's; nothing written")
        (staging / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return meta


@dataclass
class ExportedModel:
    """A loaded export: the exported program's module and its model.json."""

    module: nn.Module
    meta: dict[str, Any]

    @property
    def classes(self) -> list[str]:
        return self.meta["classes"]

    @torch.no_grad()
    def probabilities(self, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
        """Softmax class probabilities of float images in [0, 1], (N, 3, H, W)."""
        parts = [torch.softmax(self.module(images[i:i + batch]), dim=1) for i in range(0, len(images), batch)]
        return torch.cat(parts) if parts else torch.empty(0, len(self.classes))


def load_exported(path: str | os.PathLike) -> ExportedModel:
    """An export folder (or its model.json / model.pt) loaded for prediction."""
    path = Path(path)
    folder = path.parent if path.is_file() else path
    if not (folder / META_FILE).is_file() or not (folder / MODEL_FILE).is_file():
        raise ConfigError(f"{path} is not a gaeanas export: it needs {META_FILE} and {MODEL_FILE} "
                          "(make one with gaeanas export RUN_DIR)")
    meta = read_json(folder / META_FILE)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ConfigError(f"{folder / META_FILE} is not a {FORMAT!r} model description")
    try:
        module = torch.export.load(folder / MODEL_FILE).module()
    except Exception as err:  # torch raises RuntimeError and others on a damaged archive
        raise ConfigError(f"{folder / MODEL_FILE} cannot be loaded: {type(err).__name__}: {err}") from None
    return ExportedModel(module, meta)


def read_images(paths: Sequence[str | os.PathLike], meta: dict[str, Any]) -> torch.Tensor:
    """Image files as the model's input: RGB, resized as in training (or to the model's input size when an image
    has another size), float (N, 3, H, W) in [0, 1]."""
    height, width = meta["input"]["size"]
    resize = meta["input"].get("resize")
    arrays = []
    for path in paths:
        arr = _decode_one(os.fspath(path), resize)
        if arr.shape[:2] != (height, width):
            if height != width:
                raise DataError(f"{path} is {arr.shape[1]}x{arr.shape[0]}; the model takes {width}x{height} images")
            arr = _decode_one(os.fspath(path), height)
        arrays.append(arr)
    if not arrays:
        return torch.empty(0, 3, height, width)
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div(255.0)


def image_files(folder: Path) -> list[Path]:
    """The image files directly in a folder, sorted."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def labelled_images(root: Path, classes: Sequence[str]) -> tuple[list[Path], list[int]]:
    """(image paths, class indices) of a class-folder tree whose folder names are among the model's classes."""
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    unknown = [p.name for p in folders if p.name not in classes]
    if unknown:
        raise DataError(f"{root}: folder(s) {unknown[:5]} are not classes of this model ({', '.join(classes[:10])})")
    paths, labels = [], []
    for folder in folders:
        files = image_files(folder)
        paths += files
        labels += [classes.index(folder.name)] * len(files)
    if not paths:
        raise DataError(f"{root} holds no images in its class folders")
    return paths, labels


def confusion_matrix(labels: Sequence[int], predicted: Sequence[int], classes: int) -> np.ndarray:
    """(classes, classes) counts: row = true class, column = predicted class."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels, dtype=np.int64), np.asarray(predicted, dtype=np.int64)), 1)
    return matrix
