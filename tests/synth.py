"""Tiny synthetic datasets and benchmark tables that tests write for themselves."""
from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gaeanas.reproduce import GridRun, grid_config
from gaeanas.runner import NullCallback
from gaeanas.spaces.nb201 import OPS, Genotype

COLOURS = [(220, 40, 40), (40, 200, 60), (50, 60, 230), (200, 200, 40)]


def make_image_folder(root: Path, classes: int = 3, per_class: int = 12, size: int = 8, seed: int = 0,
                      mode: str = "RGB") -> Path:
    """Class k is a noisy image of colour k (mode "L": of brightness k): separable, so a search can learn something
    in a few steps."""
    rng = np.random.default_rng(seed)
    for k in range(classes):
        folder = root / f"class{k}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.clip(np.array(COLOURS[k]) + rng.normal(0, 40, (size, size, 3)), 0, 255).astype(np.uint8)
            image = Image.fromarray(pixels)
            if mode == "L":
                image = Image.fromarray(np.clip(40 + 70 * k + rng.normal(0, 20, (size, size)), 0, 255).astype(np.uint8))
            image.save(folder / f"{i:03d}.png")
    return root


def make_train_test_folders(root: Path) -> Path:
    """3 classes of 16x16 images: 8 per class in root/train, 4 per class in root/test."""
    make_image_folder(root / "train", classes=3, per_class=8, size=16)
    make_image_folder(root / "test", classes=3, per_class=4, size=16, seed=1)
    return root


def write_full_nb201_table(path: Path) -> Path:
    """A table with every NAS-Bench-201 cell; accuracy rises with the number of 3x3 convolutions."""
    lines = ["CIFAR10TestAccuracy200Epochs,CIFAR100TestAccuracy200Epochs,ImageNetTestAccuracy200Epochs,"
             "ArchitectureString,UniqueString"]
    for ops in itertools.product(OPS, repeat=6):
        conv = ops.count("nor_conv_3x3")
        lines.append(f"{80 + 2 * conv},{50 + 3 * conv},{20 + 4 * conv},{Genotype(ops)},u")
    path.write_text("\n".join(lines) + "\n")
    return path


def working_pairs() -> list[tuple[str, str]]:
    """Every registered (space, method) pair that is meant to work: the space accepts the method."""
    from gaeanas.errors import ConfigError
    from gaeanas.methods import METHODS
    from gaeanas.spaces import SPACES

    pairs = []
    for space_name, space in sorted(SPACES.items()):
        for method_name, method in sorted(METHODS.items()):
            try:
                space.check_method(method)
            except ConfigError:
                continue
            pairs.append((space_name, method_name))
    return pairs


def nb201_methods() -> list[str]:
    """Registered methods that run on the NAS-Bench-201 space (no partial channels or edge weights)."""
    return [method for space, method in working_pairs() if space == "nb201"]


class StopAt(NullCallback):
    """Simulates a kill: raises in the middle of epoch `epoch` (0-based), after some steps."""

    def __init__(self, epoch: int, step: int) -> None:
        self.epoch, self.step, self.current = epoch, step, -1

    def on_epoch_start(self, epoch, epochs, steps):
        self.current = epoch

    def on_step(self, step, metrics):
        if self.current == self.epoch and step == self.step:
            raise KeyboardInterrupt


def assert_fast_path_matches(plain: "torch.nn.Module", fast: "torch.nn.Module", x: "torch.Tensor",
                             arch: dict, mixing=None, atol: float = 1e-4, buffers: bool = True) -> None:
    """`fast` (a faster path of the same network, same parameters) gives the outputs, gradients (of the
    parameters and of the architecture tensors `arch`) and, if `buffers`, the BN statistics of `plain`.
    mixing: probabilities -> Mixing (default: the plain soft mixture)."""
    from gaeanas.relax import Mixing

    mixing = mixing or Mixing
    plain.zero_grad(set_to_none=True)
    fast.zero_grad(set_to_none=True)
    leaves = [{k: v.clone().requires_grad_(True) for k, v in arch.items()} for _ in range(2)]
    outs = [model(x, {k: mixing(v) for k, v in w.items()}) for model, w in zip((plain, fast), leaves)]
    torch.testing.assert_close(outs[1], outs[0], atol=atol / 10, rtol=atol)
    for out in outs:
        out.square().sum().backward()
    for name in arch:
        torch.testing.assert_close(leaves[1][name].grad, leaves[0][name].grad, atol=atol, rtol=atol)
    for p, q in zip(plain.parameters(), fast.parameters()):
        if p.grad is None or q.grad is None:  # a skipped op's parameters get no gradient on either path
            assert p.grad is None and q.grad is None or (p.grad if q.grad is None else q.grad).abs().max() == 0
            continue
        torch.testing.assert_close(q.grad, p.grad, atol=atol, rtol=atol)
    for p, q in zip(plain.buffers(), fast.buffers()) if buffers else ():
        torch.testing.assert_close(q, p, atol=atol / 100, rtol=atol / 10)


def kill_and_resume(run, cfg, tmp_path: Path) -> tuple[dict, dict]:
    """Run `cfg` straight through, and again killed in epoch 2 then resumed: (straight result, resumed result).

    run(cfg, run_dir, callbacks=..., resume=...) is run_search or run_training. Checks that the killed run
    left no result and kept exactly its one finished epoch.
    """
    from gaeanas.rundir import read_log

    straight = run(cfg, tmp_path / "straight")
    try:
        run(cfg, tmp_path / "killed", callbacks=[StopAt(epoch=1, step=1)])
    except KeyboardInterrupt:
        pass
    else:
        raise AssertionError("the simulated kill did not stop the run")
    assert not (tmp_path / "killed" / "result.json").exists()
    assert [r["epoch"] for r in read_log(tmp_path / "killed")] == [1]
    return straight, run(cfg, tmp_path / "killed", resume=True)


def _layout(t: "torch.Tensor") -> str:
    """"cl" or "nchw" for a 4-D tensor in one of them ("cl/nchw" when both fit its shape), else "strided"."""
    names = [name for name, fmt in (("cl", torch.channels_last), ("nchw", torch.contiguous_format))
             if t.is_contiguous(memory_format=fmt)]
    return "/".join(names) or "strided"


def batch_norm_layout_mismatches(loss: "torch.Tensor") -> list[tuple[str, str, tuple]]:
    """Run loss.backward(); (gradient layout, input layout, shape) of every BN backward whose two differ."""
    from torch.utils._python_dispatch import TorchDispatchMode

    found: list[tuple[str, str, tuple]] = []

    class RecordBatchNormLayouts(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.overloadpacket is torch.ops.aten.native_batch_norm_backward:
                grad, inp = _layout(args[0]), _layout(args[1])
                if not set(grad.split("/")) & set(inp.split("/")):
                    found.append((grad, inp, tuple(args[1].shape)))
            return func(*args, **(kwargs or {}))

    with RecordBatchNormLayouts():
        loss.backward()
    return found


def fake_run(path: Path, run: GridRun, c10: list, entropy: list, genotype: str | list, seconds: float, scale="cpu",
             weights: list | None = None, **overrides):
    """A finished run directory as `gaeanas search` leaves it, with made-up numbers; genotype is the final one, or
    one per epoch; weights, the cell's operation-weight rows (OPS order) of every epoch (uniform by default)."""
    path.mkdir(parents=True)
    cfg = grid_config(run, scale, "data", "table.csv", **overrides).resolved()
    genotypes = genotype if isinstance(genotype, list) else [genotype] * len(c10)
    genotype = genotypes[-1]
    (path / "config.json").write_text(json.dumps(dataclasses.asdict(cfg)))
    records = [{"epoch": i + 1, "entropy": h, "genotype": g, "seconds": seconds / len(c10),
                "arch_weights": {"cell": weights or [[0.2] * 5] * 6},
                "oracle": {"cifar10": a, "cifar100": a - 20, "ImageNet16-120": a - 50}}
               for i, (a, h, g) in enumerate(zip(c10, entropy, genotypes))]
    (path / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    result = {"genotype": genotype, "entropy": entropy[-1], "oracle": records[-1]["oracle"],
              "search_seconds": seconds, "arch_weights": {}, "epochs": len(c10),
              "ops": list(OPS)}
    (path / "result.json").write_text(json.dumps(result))
    return path
