"""The architecture search loop: ERM (single-level) or first-order bilevel, with run directories and resume."""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterator, Sequence

import torch
import torch.nn.functional as F

from .data import ImageDataset, channel_stats, load_dataset, split_in_two
from .distributed import DataParallel, data_parallel
from .errors import ConfigError, DataError
from .memory import require_memory
from .methods import METHODS, Method, get_method, method_settings
from .rundir import check_run_settings, config_from_dict, flag, opt, read_config
from .relax import Architecture, Mixing, deterministic
from .runner import (EpochCallback, EpochRunner, check_finite, evaluate, evaluation_loader, run_or_resume, seeded,
                     sgd_step, sgd_with_cosine, training_loader)
from .runtime import PRECISIONS, autocast
from .spaces import SPACES, SearchModel, SearchSpace, candidate_ops, get_space, space_settings, supernet_bytes

log = logging.getLogger(__name__)

OBJECTIVES = ("erm", "bilevel")
UPDATE_ORDERS = ("arch-first", "weights-first")
SELECTIONS = ("best", "last")
# Epoch counts that a recipe states for its own length: left to their default, they scale with --epochs.
EPOCH_SETTINGS = ("warmup_epochs", "lr_cycle")
# What a config.json written before these settings existed ran with.
LEGACY_SETTINGS = {"lr_cycle": 0, "update_order": "arch-first", "select": "last", "nesterov": False,
                   "eg_floor_last": False}


@dataclass
class SearchConfig:
    """Everything that defines a search. Defaults follow the GAEA paper's appendix C.3 (NAS-Bench-201)."""

    KIND: ClassVar[str] = "search"  # what config.json's run_info calls this kind of run
    # what to search
    space: str = opt("nb201", "search space (registered in gaeanas.spaces)")
    method: str = opt("gaea-darts", "search method (registered in gaeanas.methods)")
    objective: str | None = opt(None, "erm: weights and architecture learn from the training set; bilevel: the "
                                      "architecture learns from a held-out half; default: the space's (nb201: erm)")
    exclude_none: bool = opt(False, "drop the `none` op from the candidates (the paper's exclude-zero setting)")
    channels: int | None = opt(None, "C, channels of the first stage; default: the space's (nb201: 16)")
    cells: int | None = opt(None, "N, searchable cells per stage; default: the space's (nb201: 5)")
    # data
    data: str = opt("digits", "digits (bundled), cifar10, cifar100 (downloaded), or a path: image folder or CIFAR python release")
    resize: int | None = opt(None, "pixels; resize every image to resize x resize")
    subset: int | None = opt(None, "images; a seeded random subset of the training split")
    crop_pad: int | None = opt(None, "pixels of zero padding for the random crop; 0 disables it; default: "
                                     "4 per 32 pixels of image side (CIFAR: 4, 8x8 digits: 1)")
    flip: bool = opt(True, "random horizontal flips")
    # weight training
    epochs: int | None = opt(None, "passes over the weight-training set; default: the space's (nb201: 25)")
    batch_size: int | None = opt(None, "images per step, for the weight and the architecture batch alike; "
                                       "default: the space's (nb201: 64)")
    lr: float | None = opt(None, "SGD learning rate at the first epoch (per batch-mean loss); "
                                 "default: the space's (nb201: 0.025)")
    lr_min: float | None = opt(None, "cosine schedule's floor, reached after the last epoch; "
                                     "default: the space's (nb201: 0.001)")
    lr_cycle: int | None = opt(None, "epochs of one cosine cycle of the weights' lr; past it the cosine restarts with "
                                     "its peak halved (the GAEA code: 50); 0: one cosine over the run; default: the "
                                     "space's or method's (nb201: 50, gdas 0), scaled to --epochs")
    momentum: float = opt(0.9, "SGD momentum")
    nesterov: bool | None = opt(None, "Nesterov momentum; default: the method's (gdas on nb201: on; else off)")
    weight_decay: float | None = opt(None, "L2 coefficient on the network weights; default: the space's or method's "
                                           "(3e-4; gdas on nb201: 5e-4)")
    grad_clip: float = opt(5.0, "max L2 norm of the weights' gradient; 0 disables")
    update_order: str | None = opt(None, "arch-first: each step updates the architecture, then the weights (DARTS, "
                                         "GAEA); weights-first: the reverse (AutoDL's GDAS); default: the method's")
    select: str | None = opt(None, "which epoch's genotype is the result: best (the best held-out accuracy of the "
                                   "supernet; bilevel only) or last; default: best under bilevel (gdas: last), "
                                   "last under erm")
    # architecture: settings left None take the method's default; one the method does not read is refused
    arch_lr: float | None = opt(None, "architecture step size; default: the method's (darts/gdas 3e-4, pcdarts 6e-4, "
                                      "gaea-darts/gaea-pcdarts 0.1, gaea-gdas 0.01; the GAEA paper's text: 0.1)")
    arch_weight_decay: float | None = opt(None, "Adam's L2 weight decay on architecture logits (darts, gdas, "
                                                "pcdarts); default: 1e-3")
    eg_floor: float | None = opt(None, "exponentiated gradient clamps weights to at least this (gaea-* methods); "
                                       "default: 1e-5")
    entropy_coef: float | None = opt(None, "exponentiated gradient's KL-to-uniform regulariser on the operation "
                                           "weights (gaea-* methods); default: 0, gaea-gdas 0.01")
    eg_floor_last: bool | None = opt(None, "exponentiated gradient renormalises, then clamps to --eg-floor (GAEA "
                                           "GDAS's code) instead of the reverse (gaea-* methods); default: gaea-gdas on")
    arch_grad_clip: float = opt(0.0, "max L2 norm of the architecture gradient, over all its tensors; 0 disables")
    example_clip: float | None = opt(None, "L: each example's architecture gradient is clipped to this L2 norm before "
                                           "the batch average, and the wipeout drops operations that cannot catch "
                                           "up at 2 * arch-lr * L a step (xnas); default: 5")
    sparse_skip: float | None = opt(None, "skip ops whose mixing weight is below this (counted as 0) so the search "
                                          "speeds up as the weights sparsify (soft-mixture methods); default: 0, off")
    tau_max: float | None = opt(None, "Gumbel temperature until the warm-up ends (gdas, gaea-gdas); default: 10")
    tau_min: float | None = opt(None, "Gumbel temperature the schedule falls towards by (tau_max - tau_min) / "
                                      "(epochs - 1) an epoch after the warm-up (gdas, gaea-gdas); default: 0.1")
    warmup_epochs: int | None = opt(None, "epochs of weight training before the architecture starts to learn; "
                                          "default: the method's (0, pcdarts 15 of 50, gaea-pcdarts 10 of 50, "
                                          "gaea-gdas 50 of 150), scaled to --epochs")
    # run
    seed: int = opt(0, "seeds initialisation, data order, augmentation, splits and Gumbel noise (0 to 2**32 - 1)")
    device: str = opt("auto", "auto, cpu or cuda")
    precision: str = opt("fp32", "fp32 or bf16 (autocast; parameters and optimizers stay fp32)")
    channels_last: bool = opt(True, "channels_last memory format for images and weights (faster on CPU and GPU)")
    benchmark: str | None = opt(None, "benchmark for each epoch's genotype: the NAS-Bench-201 table (CSV) in space "
                                      "nb201; NAS-Bench-101's nasbench_only108.tfrecord (or a table saved from it) "
                                      "in the nb1shot1 spaces")
    extra: dict[str, Any] = field(default_factory=dict, metadata={"help": "free-form notes kept with the run"})

    def resolved(self) -> "SearchConfig":
        """A copy with every unset field filled from the method's recipe for the space, the method's and then the
        space's defaults; checked.

        Epoch counts in EPOCH_SETTINGS that are left unset scale with --epochs against the recipe's own length
        (gaea-gdas' 50 warm-up epochs of 150 become 10 of 30). A method or space setting that the chosen method or
        space does not read is refused (ConfigError).
        """
        space, method = get_space(self.space), get_method(self.method)
        refuse_unused(self, method, space)
        space.check_method(method)
        if self.exclude_none and "none" not in space.ops:
            raise ConfigError(f"--exclude-none does not apply to space {space.name!r}: it has no `none` operation")
        layers = (method.recipe(space.name), method.settings(), space.defaults)
        filled = {}
        for f in dataclasses.fields(self):
            if getattr(self, f.name) is None:
                for layer in layers:
                    if f.name in layer:
                        filled[f.name] = layer[f.name]
                        break
        recipe_epochs = filled.get("epochs", next(layer["epochs"] for layer in layers if "epochs" in layer))
        if self.epochs is not None and self.epochs != recipe_epochs:
            for name in EPOCH_SETTINGS:
                if filled.get(name):
                    filled[name] = max(1, round(filled[name] * self.epochs / recipe_epochs))
        if self.select is None and "select" not in filled:
            filled["select"] = "best" if (self.objective or filled.get("objective")) == "bilevel" else "last"
        cfg = dataclasses.replace(self, **filled)
        cfg.validate()
        if cfg.warmup_epochs >= cfg.epochs:
            default = f" ({method.name}'s default)" if "warmup_epochs" in filled else ""
            raise ConfigError(f"--warmup-epochs {cfg.warmup_epochs}{default} must be less than --epochs "
                              f"{cfg.epochs}: the architecture would never learn and the genotype would come from "
                              "untrained weights; give more --epochs or a smaller --warmup-epochs")
        return cfg

    def validate(self) -> None:
        """Raise ConfigError naming the first out-of-range setting, or settings that cannot work together."""
        check_run_settings(self)
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"unknown objective {self.objective!r}; known: {OBJECTIVES}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r}; known: {PRECISIONS}")
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr, "arch_lr": self.arch_lr,
                    "channels": self.channels, "cells": self.cells, "tau_min": self.tau_min, "tau_max": self.tau_max}
        for name, value in positive.items():
            if value is not None and not value > 0:
                raise ConfigError(f"{flag(name)} must be > 0, got {value}")
        non_negative = {"lr_min": self.lr_min, "momentum": self.momentum, "weight_decay": self.weight_decay,
                        "grad_clip": self.grad_clip, "crop_pad": self.crop_pad, "warmup_epochs": self.warmup_epochs,
                        "lr_cycle": self.lr_cycle,
                        "entropy_coef": self.entropy_coef, "arch_grad_clip": self.arch_grad_clip,
                        "example_clip": self.example_clip,
                        "arch_weight_decay": self.arch_weight_decay}
        for name, value in non_negative.items():
            if value is not None and value < 0:
                raise ConfigError(f"{flag(name)} must be >= 0, got {value}")
        if self.subset is not None and self.subset < 2:
            raise ConfigError(f"--subset must be at least 2 images, got {self.subset}")
        for name in ("sparse_skip", "eg_floor"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value < 1.0:
                raise ConfigError(f"{flag(name)} must be in [0, 1), got {value}")
        choices = {"update_order": UPDATE_ORDERS, "select": SELECTIONS}
        for name, known in choices.items():
            if getattr(self, name) is not None and getattr(self, name) not in known:
                raise ConfigError(f"unknown {flag(name)} {getattr(self, name)!r}; known: {known}")
        if self.select == "best" and self.objective == "erm":
            raise ConfigError("--select best needs a held-out split to score each epoch's supernet: use it with "
                              "--objective bilevel, or --select last")
        if self.nesterov and not self.momentum > 0:
            raise ConfigError("--nesterov needs --momentum > 0")
        if self.tau_max is not None and self.tau_min is not None and self.tau_max < self.tau_min:
            raise ConfigError(f"--tau-max ({self.tau_max}) must be at least --tau-min ({self.tau_min}): the Gumbel "
                              "temperature anneals down from --tau-max")

    def record(self) -> dict[str, Any]:
        """The settings this config's method and space use (what config.json keeps)."""
        unused = _unused_settings(get_method(self.method), get_space(self.space))
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in unused}

    @classmethod
    def from_saved(cls, values: dict[str, Any]) -> "SearchConfig":
        """From a config.json; one written before settings were refused may hold its method's unused ones, and one
        written before a setting existed ran with its LEGACY_SETTINGS value."""
        values = {**LEGACY_SETTINGS, **values}
        try:
            unused = _unused_settings(get_method(values.get("method", cls.method)),
                                      get_space(values.get("space", cls.space)))
        except ConfigError:
            unused = frozenset()
        return cls.from_dict({k: v for k, v in values.items() if k not in unused})

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "SearchConfig":
        """Build from a dict (e.g. config.json), rejecting unknown keys."""
        return config_from_dict(cls, values)


SearchCallback = EpochCallback  # the hooks the search loop calls


def _unused_settings(method: Method, space: SearchSpace) -> frozenset[str]:
    """Method and space settings that this method and space do not read."""
    return (method_settings() - set(method.settings())) | (space_settings() - space.settings)


def refuse_unused(cfg: SearchConfig, method: Method, space: SearchSpace) -> None:
    """ConfigError, naming the flag, for the first setting given that the method or space does not read."""
    for name in sorted(method_settings() - set(method.settings())):
        if getattr(cfg, name) is not None:
            users = ", ".join(m for m in METHODS if name in METHODS[m].settings())
            raise ConfigError(f"{flag(name)} does not apply to method {method.name!r} (it is read by: {users})")
    for name in sorted(space_settings() - space.settings):
        if getattr(cfg, name) is not None:
            users = ", ".join(s for s in SPACES if name in SPACES[s].settings)
            raise ConfigError(f"{flag(name)} does not apply to space {space.name!r} (only to: {users})")


def build_search_model(cfg: SearchConfig, num_classes: int, gumbel_generator: torch.Generator | None = None
                       ) -> SearchModel:
    """Supernet + architecture parameters + the method's relaxation for a resolved config (global torch RNG)."""
    space, method = get_space(cfg.space), get_method(cfg.method)
    ops = candidate_ops(space, cfg.exclude_none)
    net = space.build_supernet(cfg.channels, cfg.cells, num_classes, ops, method)
    arch = Architecture(space.arch_shapes(ops, method), method.parametrisation)
    return SearchModel(space, net, arch, method.build_relaxation(cfg, gumbel_generator), ops)


def default_crop_pad(image_size: tuple[int, int]) -> int:
    """CIFAR's 4-pixel crop padding, scaled to the image side: 4 pixels per 32 (at least 1)."""
    return max(1, round(4 * min(image_size) / 32))


class SearchStep:
    """The two updates of one search step on a built model: architecture (on its batch) and weights, in the
    config's update order.

    Owns the SGD weight optimizer with its cosine schedule and the method's architecture optimizer; the search
    loop and the speed benchmarks drive it.
    """

    def __init__(self, cfg: SearchConfig, model: SearchModel, device: torch.device,
                 dp: DataParallel | None = None) -> None:
        self.cfg, self.model, self.device, self.dp = cfg, model, device, dp
        self.weight_params = model.weight_parameters()
        self.arch_params = model.arch_parameters()
        self.weight_opt, self.scheduler = sgd_with_cosine(self.weight_params, cfg, cfg.nesterov, cfg.lr_cycle)
        self.arch_opt = get_method(cfg.method).build_arch_optimizer(cfg, model.arch)
        self.clipped = self.examples = 0  # per-example clipping (XNAS): examples clipped / seen, since the last read
        # DistributedDataParallel averages the weights' gradients; arch_step averages the architecture's
        self.forward = model if dp is None else data_parallel(
            model, [f"arch.{name}" for name, _ in model.arch.named_parameters()])

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean cross-entropy in fp32, number correct) under the config's precision."""
        with autocast(self.device, self.cfg.precision):
            logits = self.forward(x)
        loss = F.cross_entropy(logits.float(), y)
        return loss, (logits.argmax(dim=1) == y).sum()

    def arch_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One architecture update on (x, y); returns (loss*n, correct, n) of this rank's share. With data
        parallelism the gradient is averaged over the ranks before the update, so every rank takes the same step."""
        weight = 1.0
        if self.dp is not None:
            x, y, weight = self.dp.shard(x, y)
        if self.cfg.example_clip is not None:
            loss, correct, grads = self.clipped_example_grads(x, y)
            grads = [g * weight for g in grads]
        else:
            with self._no_weight_sync():
                loss, correct = self.loss(x, y)
                grads = list(torch.autograd.grad(loss * weight, self.arch_params))
        if self.dp is not None:
            self.dp.average_(grads)
        for p, g in zip(self.arch_params, grads):
            p.grad = g
        if self.cfg.arch_grad_clip:
            torch.nn.utils.clip_grad_norm_(self.arch_params, self.cfg.arch_grad_clip)
        self.arch_opt.step()
        self.arch_opt.zero_grad(set_to_none=True)
        return torch.stack([loss.detach() * len(y), correct.float(), loss.new_tensor(len(y))])

    def clipped_example_grads(self, x: torch.Tensor, y: torch.Tensor
                              ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """(mean loss, correct, architecture gradient) with each example's gradient clipped to norm example_clip
        before the batch average (XNAS).

        Each example gets its own copy of the mixing weights (a leaf of shape (..., k, B, 1, 1, 1) that broadcasts
        over its feature maps), so one backward pass gives every example's share of the batch gradient; the shares
        sum to the usual gradient. With BatchNorm in training mode an example's loss also depends on the others
        through the batch statistics: its share is the gradient that flows through its own mixing weights, which
        carries its effect on the others' losses too. Returns the gradient with respect to the probabilities, as
        the simplex update wants.
        """
        model, n = self.model, len(y)
        leaves = {name: model.arch.probs(name).detach()[(..., None, None, None, None)].expand(
            *model.arch.theta[name].shape, n, 1, 1, 1).clone().requires_grad_() for name in model.arch.theta}
        with autocast(self.device, self.cfg.precision):
            logits = model.net(x, {name: Mixing(w) for name, w in leaves.items()})
        losses = F.cross_entropy(logits.float(), y, reduction="none")
        per_example = torch.autograd.grad(losses.sum(), list(leaves.values()))  # each (..., k, B, 1, 1, 1)
        flat = torch.cat([g.reshape(-1, n) for g in per_example])  # (all weights, B)
        norms = flat.norm(dim=0)
        scale = (self.cfg.example_clip / norms.clamp_min(1e-12)).clamp(max=1.0)
        self.clipped = self.clipped + (norms > self.cfg.example_clip).sum()  # a tensor: no host sync per step
        self.examples += n
        grads = [(g.reshape(-1, n) * scale).sum(dim=1).reshape(g.shape[:-4]) / n for g in per_example]
        return losses.mean().detach(), (logits.argmax(dim=1) == y).sum(), grads  # in arch_params' order

    def _no_weight_sync(self):
        """The architecture step's forward: DistributedDataParallel must not wait for weight gradients there."""
        return contextlib.nullcontext() if self.dp is None else self.forward.no_sync()

    def weight_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One SGD update of the network weights on (x, y); returns (loss*n, correct, n) of this rank's share. With
        data parallelism DistributedDataParallel averages the gradients over the ranks."""
        weight = 1.0
        if self.dp is not None:
            x, y, weight = self.dp.shard(x, y)
        loss, correct = self.loss(x, y)
        sgd_step(loss * weight, self.weight_params, self.weight_opt, self.cfg.grad_clip)
        return torch.stack([loss.detach() * len(y), correct.float(), loss.new_tensor(len(y))])


def load_search_data(cfg: SearchConfig, cache_dir: str | os.PathLike | None = None
                     ) -> tuple[ImageDataset, ImageDataset]:
    """(weight set, architecture set): the same training set for ERM, its two seeded halves for bilevel."""
    train = load_dataset(cfg.data, "train", resize=cfg.resize, cache_dir=cache_dir, subset=cfg.subset, seed=cfg.seed)
    if cfg.objective == "erm":
        return train, train
    return split_in_two(train, cfg.seed, 0.5)


class Search(EpochRunner):
    """One search run in one run directory; `run()` starts it or continues it from its checkpoint."""

    divergence_hint = "a lower --lr or --arch-lr may help"

    def __init__(self, cfg: SearchConfig, run_dir: str | os.PathLike, device: torch.device,
                 callbacks: Sequence[SearchCallback] = (), cache_dir: str | os.PathLike | None = None,
                 dp: DataParallel | None = None) -> None:
        """dp: this process's rank in a data-parallel run (each rank computes on its share of every batch; only
        rank 0 writes the run directory); None for one process."""
        self.dp = dp
        self.writes = dp is None or dp.is_main
        self.cfg = dataclasses.replace(cfg.resolved(), device=str(device))
        self.run_dir = Path(run_dir)
        self.device = device
        self.callbacks = list(callbacks)
        self.cache_dir = cache_dir
        self.method = get_method(self.cfg.method)
        space = get_space(self.cfg.space)
        self.lookup = space.load_benchmark(self.cfg.benchmark) if self.cfg.benchmark else None
        self._setup()

    # ---- construction -------------------------------------------------------------------------
    def _setup(self) -> None:
        cfg, device = self.cfg, self.device
        weight_set, arch_set = load_search_data(cfg, self.cache_dir)
        self._check_images(weight_set)
        if cfg.crop_pad is None:
            self.cfg = cfg = dataclasses.replace(cfg, crop_pad=default_crop_pad(weight_set.image_size))
        mean, std = channel_stats(weight_set.images)
        self.generators = {name: torch.Generator(device=device).manual_seed(cfg.seed * 1000 + i)
                           for i, name in enumerate(("weights", "arch", "gumbel"))}
        self.weight_loader = training_loader(weight_set, cfg, self.generators["weights"], device, mean, std)
        self.arch_loader = training_loader(arch_set, cfg, self.generators["arch"], device, mean, std)
        # bilevel: the held-out split scores each epoch's supernet, for best-epoch selection
        self.valid_loader = (evaluation_loader(arch_set, cfg, device, mean, std) if cfg.objective == "bilevel"
                             else None)
        self.classes = weight_set.classes
        self.data = {"name": cfg.data, "classes": list(self.classes),
                     "images": len(weight_set) + (len(arch_set) if arch_set is not weight_set else 0)}
        with seeded(cfg.seed, device):
            self.model = build_search_model(cfg, len(self.classes), self.generators["gumbel"]).to(device)
        self._check_memory(weight_set, arch_set)
        if cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.step = SearchStep(cfg, self.model, device, self.dp)
        self.weight_opt, self.arch_opt, self.scheduler = self.step.weight_opt, self.step.arch_opt, self.step.scheduler
        if hasattr(self.arch_opt, "set_horizon"):  # XNAS' wipeout paces itself by the architecture steps left
            self.arch_opt.set_horizon(len(self.weight_loader) * (cfg.epochs - cfg.warmup_epochs))
        self.epoch = 0
        log.info("search: %s/%s/%s on %s (%d weight, %d arch images, %d classes) on %s", cfg.space, cfg.method,
                 cfg.objective, cfg.data, len(weight_set), len(arch_set), len(self.classes), device)

    def _check_images(self, weight_set: ImageDataset) -> None:
        """Refuse data with fewer than two classes, or images too small for the supernet's reductions."""
        cfg, space = self.cfg, get_space(self.cfg.space)
        if len(weight_set.classes) < 2:
            raise DataError(f"the data {cfg.data} has {len(weight_set.classes)} class "
                            f"({', '.join(weight_set.classes)}); a search needs at least 2 (one subfolder per class)")
        height, width = weight_set.image_size
        if min(height, width) < space.min_image_size:
            side = space.min_image_size
            raise DataError(f"the images of {cfg.data} are {width}x{height} pixels, smaller than the {side}x{side} "
                            f"that the {space.name} supernet's reductions need; use --resize {side} or larger")

    def _check_memory(self, weight_set: ImageDataset, arch_set: ImageDataset) -> None:
        """Refuse a search step that would not fit in memory (checked before the first forward pass)."""
        cfg, space = self.cfg, get_space(self.cfg.space)
        height, width = weight_set.image_size
        parameters = sum(p.numel() for p in self.model.parameters())
        need = supernet_bytes(space, cfg.channels, cfg.cells, len(candidate_ops(space, cfg.exclude_none)),
                              weight_set.image_size, cfg.batch_size, parameters)
        if self.device.type != "cpu":  # the dataset is copied to the device too
            need += weight_set.images.numel() + (arch_set.images.numel() if arch_set is not weight_set else 0)
        require_memory(need, f"a search step of the {space.name} supernet (C={cfg.channels}, N={cfg.cells}, batch "
                             f"{cfg.batch_size}, {width}x{height} images)", self.device,
                       "use --resize with a smaller size, or a smaller --batch-size, --channels or --cells")

    # ---- checkpointing -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-for-bit: weights, architecture, optimizers, RNG, epoch."""
        return {
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "arch": {name: p.detach().clone() for name, p in self.model.arch.theta.items()},
            "weight_optimizer": self.weight_opt.state_dict(),
            "arch_optimizer": self.arch_opt.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": {k: g.get_state() for k, g in self.generators.items()},
            "config": self.cfg.record(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.weight_opt.load_state_dict(state["weight_optimizer"])
        self.arch_opt.load_state_dict(state["arch_optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        for name, gen in self.generators.items():
            gen.set_state(state["rng"][name])
        self.epoch = state["epoch"]

    # ---- the epoch ------------------------------------------------------------------------------
    def _run_epoch(self) -> dict[str, Any]:
        cfg, epoch = self.cfg, self.epoch
        scheduled = self.method.on_epoch_start(self.model.relax, cfg, epoch)
        learn_arch = epoch >= cfg.warmup_epochs
        lr = self.weight_opt.param_groups[0]["lr"]
        for cb in self.callbacks:
            cb.on_epoch_start(epoch, cfg.epochs, len(self.weight_loader))
        start = time.perf_counter()
        self.model.train()
        totals = torch.zeros(6, device=self.device)  # loss, correct, n (weights); loss, correct, n (arch)
        arch_batches = self._arch_batches()
        weights_first = cfg.update_order == "weights-first"
        for step, (x, y) in enumerate(self.weight_loader):
            if weights_first:
                totals[:3] += self.step.weight_step(x, y)
            if learn_arch:
                totals[3:] += self.step.arch_step(*next(arch_batches))
            if not weights_first:
                totals[:3] += self.step.weight_step(x, y)
            check_finite({"the weight-training loss": totals[0], "the architecture loss": totals[3],
                          "the architecture weights": torch.cat([p.reshape(-1) for p in self.step.arch_params])}, epoch, step)
            if self.callbacks:  # metrics once per step, and only when someone listens
                metrics = {"loss": totals[0] / totals[2], "acc": totals[1] / totals[2],
                           "entropy": self.model.arch.entropy()}
                for cb in self.callbacks:
                    cb.on_step(step, metrics)
        check_finite({"the network weights": torch.cat([p.detach().reshape(-1) for p in self.step.weight_params])},
                      epoch, step)
        if self.dp is not None:  # the epoch's losses and accuracies over every rank's share
            self.dp.sum_(totals)
        self.scheduler.step()
        self.epoch += 1
        record = self._epoch_record(totals.tolist(), lr)
        record["seconds"] = time.perf_counter() - start
        return {**record, **scheduled}

    def validate(self) -> tuple[float, float]:
        """(loss, accuracy in %) of the supernet on the held-out split, in eval mode, running on each edge what the
        genotype keeps where the relaxation samples (as the reference's `discrete` inference does)."""
        self.model.eval()
        try:
            with deterministic(self.model.relax):
                return evaluate(self.model, self.valid_loader, self.device, self.cfg.precision)
        finally:
            self.model.train()

    def _arch_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Architecture batches for one epoch: a fresh shuffle of the architecture set, cycled if short."""
        while True:
            yield from self.arch_loader

    def _epoch_record(self, totals: list[float], lr: float) -> dict[str, Any]:
        w_loss, w_correct, w_n, a_loss, a_correct, a_n = totals
        genotype = self.model.genotype()
        record: dict[str, Any] = {
            "epoch": self.epoch,
            "train_loss": w_loss / w_n, "train_acc": 100.0 * w_correct / w_n,
            "arch_loss": a_loss / a_n if a_n else None, "arch_acc": 100.0 * a_correct / a_n if a_n else None,
            "entropy": float(self.model.arch.entropy()),
            "genotype": str(genotype),
            "arch_weights": self.model.arch.as_lists(),
            "ops": list(self.model.ops),
            "lr": lr,
        }
        edge_entropy = self.model.arch.edge_entropy()
        if edge_entropy is not None:
            record["edge_entropy"] = float(edge_entropy)
        if self.cfg.example_clip is not None:  # XNAS: how often the clip acted, and how many operations are out
            record["examples_clipped"] = float(self.step.clipped) / max(self.step.examples, 1)
            record["wiped_out"] = sum(int((p == 0).sum()) for p in self.step.arch_params)
            self.step.clipped = self.step.examples = 0
        if self.valid_loader is not None:
            record["valid_loss"], record["valid_acc"] = self.validate()
        if self.lookup is not None:
            record["oracle"] = self.lookup(genotype)
        return record

    def _result(self) -> dict[str, Any]:
        records = self.records
        last, best = records[-1], best_epoch_record(records)
        chosen = best if self.cfg.select == "best" else last
        result = {
            "genotype": chosen["genotype"],
            "oracle": chosen.get("oracle"),
            "select": self.cfg.select,
            "selected_epoch": chosen["epoch"],
            "last": epoch_summary(last),
            "arch_weights": last["arch_weights"],
            "ops": last["ops"],
            "entropy": last["entropy"],
            "train_acc": last["train_acc"],
            "epochs": self.epoch,
            "search_seconds": sum(r["seconds"] for r in records),
            "classes": list(self.classes),
        }
        if "edge_entropy" in last:
            result["edge_entropy"] = last["edge_entropy"]
        space = get_space(self.cfg.space)
        result.update(space.describe(space.parse_genotype(chosen["genotype"])))
        if best is not None:
            result["best"] = epoch_summary(best)
        return result


def best_epoch_record(records: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The record of the epoch whose supernet scored best on the held-out split (the first, on ties); None
    without held-out scores (ERM)."""
    scored = [r for r in records if r.get("valid_acc") is not None]
    return max(scored, key=lambda r: r["valid_acc"]) if scored else None


def epoch_summary(record: dict[str, Any]) -> dict[str, Any]:
    """An epoch's genotype and scores, as result.json keeps them for the best and the last epoch."""
    keys = ("epoch", "genotype", "valid_acc", "oracle", "entropy")
    return {k: record[k] for k in keys if record.get(k) is not None}


def load_config(run_dir: str | os.PathLike) -> SearchConfig:
    """The resolved config a run directory was started with."""
    return read_config(run_dir, SearchConfig)


def run_search(cfg: SearchConfig, run_dir: str | os.PathLike, device: torch.device | str = "cpu",
               callbacks: Sequence[SearchCallback] = (), resume: bool = False,
               cache_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Run (or with resume=True, continue) a search; returns the result dict also written to result.json."""
    return run_or_resume(Search, SearchConfig, cfg, run_dir, device, callbacks, resume, cache_dir)


__all__ = ["SearchConfig", "Search", "SearchStep", "SearchCallback", "run_search", "load_config", "best_epoch_record",
           "build_search_model", "refuse_unused", "OBJECTIVES"]
