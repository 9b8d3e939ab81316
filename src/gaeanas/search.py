"""The architecture search loop: ERM (single-level) or first-order bilevel, with run directories and resume."""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F

from .data import DeviceLoader, ImageDataset, channel_stats, load_dataset, seeded_subset, split_in_two
from .errors import ConfigError
from .methods import Method, get_method
from .nasbench import NB201Table
from .optim import create_arch_optimizer
from .relax import Architecture, create_relaxation
from .rundir import (EpochCallback, EpochRunner, config_from_dict, opt, read_config, read_log,
                     run_or_resume)
from .runtime import PRECISIONS, autocast, rng_states, set_rng_states
from .spaces import SearchModel, candidate_ops, get_space

log = logging.getLogger(__name__)

OBJECTIVES = ("erm", "bilevel")


# Used when neither the method nor the space sets a default.
RESOLVE_FALLBACKS: dict[str, Any] = {"warmup_epochs": 0}


@dataclass
class SearchConfig:
    """Everything that defines a search. Defaults follow the GAEA paper's appendix C.3 (NAS-Bench-201)."""

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
    momentum: float = opt(0.9, "SGD momentum")
    weight_decay: float = opt(3e-4, "L2 coefficient on the network weights")
    grad_clip: float = opt(5.0, "max L2 norm of the weights' gradient; 0 disables")
    # architecture
    arch_lr: float | None = opt(None, "architecture step size; default: the method's (darts/gdas 3e-4, gaea-darts 0.1, gaea-gdas 0.01)")
    arch_weight_decay: float | None = opt(None, "Adam's weight decay on architecture logits; default: the method's (1e-3)")
    eg_floor: float = opt(1e-5, "exponentiated gradient clamps weights to at least this")
    entropy_coef: float = opt(0.0, "exponentiated gradient's KL-to-uniform regulariser")
    arch_grad_clip: float = opt(0.0, "max L2 norm of the architecture gradient; 0 disables")
    sparse_skip: float = opt(0.0, "skip ops whose mixing weight is below this (counted as 0) so the search speeds "
                                  "up as the weights sparsify; soft-mixture methods only; 0 disables")
    tau_max: float = opt(10.0, "Gumbel temperature at the first epoch (gdas, gaea-gdas)")
    tau_min: float = opt(0.1, "Gumbel temperature at the last epoch")
    warmup_epochs: int | None = opt(None, "epochs of weight training before the architecture starts to learn; "
                                          "default: the method's (0, pcdarts 15, gaea-pcdarts 10)")
    # run
    seed: int = opt(0, "seeds initialisation, data order, augmentation, splits and Gumbel noise")
    device: str = opt("auto", "auto, cpu or cuda")
    precision: str = opt("fp32", "fp32 or bf16 (autocast; parameters and optimizers stay fp32)")
    channels_last: bool = opt(True, "channels_last memory format for images and weights (faster on CPU and GPU)")
    benchmark: str | None = opt(None, "NAS-Bench-201 table (CSV) for oracle accuracies")
    extra: dict[str, Any] = field(default_factory=dict, metadata={"help": "free-form notes kept with the run"})

    def resolved(self) -> "SearchConfig":
        """A copy with every unset field filled from the method's, then the space's defaults; range-checked.

        Precedence: a value given here > the method's default > the space's default > RESOLVE_FALLBACKS.
        """
        space, method = get_space(self.space), get_method(self.method)
        method_defaults = {"arch_lr": method.arch_lr,
                           "arch_weight_decay": method.optimizer_kwargs.get("weight_decay", 0.0),
                           **method.defaults}
        layers = (method_defaults, space.defaults, RESOLVE_FALLBACKS)
        filled = {}
        for f in dataclasses.fields(self):
            if getattr(self, f.name) is None:
                for layer in layers:
                    if f.name in layer:
                        filled[f.name] = layer[f.name]
                        break
        cfg = dataclasses.replace(self, **filled)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Raise ConfigError naming the first out-of-range setting."""
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"unknown objective {self.objective!r}; known: {OBJECTIVES}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r}; known: {PRECISIONS}")
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr, "arch_lr": self.arch_lr,
                    "channels": self.channels, "cells": self.cells, "tau_min": self.tau_min}
        for name, value in positive.items():
            if value is not None and not value > 0:
                raise ConfigError(f"{name} must be > 0, got {value}")
        non_negative = {"lr_min": self.lr_min, "momentum": self.momentum, "weight_decay": self.weight_decay,
                        "grad_clip": self.grad_clip, "crop_pad": self.crop_pad or 0, "warmup_epochs": self.warmup_epochs,
                        "entropy_coef": self.entropy_coef, "arch_grad_clip": self.arch_grad_clip}
        for name, value in non_negative.items():
            if value < 0:
                raise ConfigError(f"{name} must be >= 0, got {value}")
        if self.subset is not None and self.subset < 2:
            raise ConfigError(f"subset must be at least 2 images, got {self.subset}")
        if not 0.0 <= self.sparse_skip < 1.0:
            raise ConfigError(f"sparse_skip must be in [0, 1), got {self.sparse_skip}")
        if self.sparse_skip and get_method(self.method).relaxation != "mixture":
            raise ConfigError(f"sparse_skip applies to soft-mixture methods; {self.method!r} samples one op per edge")
        if self.benchmark is not None and self.space != "nb201":
            raise ConfigError("--benchmark is a NAS-Bench-201 table; it only applies to --space nb201")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "SearchConfig":
        """Build from a dict (e.g. config.json), rejecting unknown keys."""
        return config_from_dict(cls, values)


SearchCallback = EpochCallback  # the hooks the search loop calls


def build_search_model(cfg: SearchConfig, num_classes: int, gumbel_generator: torch.Generator | None = None
                       ) -> SearchModel:
    """Supernet + architecture parameters + relaxation for a resolved config (uses the global torch RNG)."""
    space, method = get_space(cfg.space), get_method(cfg.method)
    ops = candidate_ops(space, cfg.exclude_none)
    net = space.build_supernet(cfg.channels, cfg.cells, num_classes, ops, method)
    arch = Architecture(space.arch_shapes(ops, method), method.parametrisation)
    if method.relaxation == "gumbel":
        relax_kwargs: dict[str, Any] = {"tau": cfg.tau_max, "generator": gumbel_generator}
    else:
        relax_kwargs = {"threshold": cfg.sparse_skip}
    return SearchModel(space, net, arch, create_relaxation(method.relaxation, **relax_kwargs), ops)


def build_arch_optimizer(cfg: SearchConfig, method: Method, params: Sequence[torch.nn.Parameter]
                         ) -> torch.optim.Optimizer:
    """The method's architecture optimizer with the config's overrides."""
    kwargs = dict(method.optimizer_kwargs)
    if method.optimizer == "adam":
        kwargs["weight_decay"] = cfg.arch_weight_decay
    else:
        kwargs.update(floor=cfg.eg_floor, entropy_coef=cfg.entropy_coef)
    return create_arch_optimizer(method.optimizer, params, lr=cfg.arch_lr, **kwargs)


def default_crop_pad(image_size: tuple[int, int]) -> int:
    """CIFAR's 4-pixel crop padding, scaled to the image side: 4 pixels per 32 (at least 1)."""
    return max(1, round(4 * min(image_size) / 32))


def gumbel_temperature(cfg: SearchConfig, epoch: int) -> float:
    """Linear from tau_max at the first epoch to tau_min at the last (GDAS)."""
    return cfg.tau_max - (cfg.tau_max - cfg.tau_min) * epoch / max(cfg.epochs - 1, 1)


class SearchStep:
    """The two updates of one search step on a built model: architecture (on its batch), then weights.

    Owns the SGD weight optimizer and the method's architecture optimizer; the search loop and the speed
    benchmark both drive it.
    """

    def __init__(self, cfg: SearchConfig, model: SearchModel, device: torch.device) -> None:
        self.cfg, self.model, self.device = cfg, model, device
        self.weight_params = model.weight_parameters()
        self.arch_params = model.arch_parameters()
        self.weight_opt = torch.optim.SGD(self.weight_params, lr=cfg.lr, momentum=cfg.momentum,
                                          weight_decay=cfg.weight_decay)
        self.arch_opt = build_arch_optimizer(cfg, get_method(cfg.method), self.arch_params)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean cross-entropy in fp32, number correct) under the config's precision."""
        with autocast(self.device, self.cfg.precision):
            logits = self.model(x)
        loss = F.cross_entropy(logits.float(), y)
        return loss, (logits.argmax(dim=1) == y).sum()

    def arch_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One architecture update on (x, y); returns (loss*n, correct, n)."""
        loss, correct = self.loss(x, y)
        grads = torch.autograd.grad(loss, self.arch_params)
        for p, g in zip(self.arch_params, grads):
            p.grad = g
        if self.cfg.arch_grad_clip:
            torch.nn.utils.clip_grad_norm_(self.arch_params, self.cfg.arch_grad_clip)
        self.arch_opt.step()
        self.arch_opt.zero_grad(set_to_none=True)
        return torch.stack([loss.detach() * len(y), correct.float(), loss.new_tensor(len(y))])

    def weight_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One SGD update of the network weights on (x, y); returns (loss*n, correct, n)."""
        loss, correct = self.loss(x, y)
        self.weight_opt.zero_grad(set_to_none=True)
        loss.backward(inputs=self.weight_params)
        if self.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.weight_params, self.cfg.grad_clip)
        self.weight_opt.step()
        return torch.stack([loss.detach() * len(y), correct.float(), loss.new_tensor(len(y))])


def load_search_data(cfg: SearchConfig, cache_dir: str | os.PathLike | None = None
                     ) -> tuple[ImageDataset, ImageDataset]:
    """(weight set, architecture set): the same training set for ERM, its two seeded halves for bilevel."""
    train = load_dataset(cfg.data, "train", resize=cfg.resize, cache_dir=cache_dir)
    if cfg.subset is not None:
        train = seeded_subset(train, cfg.subset, cfg.seed)
    if cfg.objective == "erm":
        return train, train
    return split_in_two(train, cfg.seed, 0.5)


class Search(EpochRunner):
    """One search run in one run directory; `run()` starts it or continues it from its checkpoint."""

    def __init__(self, cfg: SearchConfig, run_dir: str | os.PathLike, device: torch.device,
                 callbacks: Sequence[SearchCallback] = (), cache_dir: str | os.PathLike | None = None) -> None:
        self.cfg = cfg.resolved()
        self.run_dir = Path(run_dir)
        self.device = device
        self.callbacks = list(callbacks)
        self.cache_dir = cache_dir
        self.method = get_method(self.cfg.method)
        self.table = NB201Table.load(self.cfg.benchmark) if self.cfg.benchmark else None
        self._setup()

    # ---- construction -------------------------------------------------------------------------
    def _setup(self) -> None:
        cfg, device = self.cfg, self.device
        torch.manual_seed(cfg.seed)
        weight_set, arch_set = load_search_data(cfg, self.cache_dir)
        if cfg.crop_pad is None:
            self.cfg = cfg = dataclasses.replace(cfg, crop_pad=default_crop_pad(weight_set.image_size))
        mean, std = channel_stats(weight_set.images)
        self.generators = {name: torch.Generator(device=device).manual_seed(cfg.seed * 1000 + i)
                           for i, name in enumerate(("weights", "arch", "gumbel"))}
        loader = dict(augment=cfg.crop_pad > 0 or cfg.flip, crop_pad=cfg.crop_pad, flip=cfg.flip,
                      mean=mean, std=std, channels_last=cfg.channels_last)
        self.weight_loader = DeviceLoader(weight_set.to(device), cfg.batch_size, self.generators["weights"], **loader)
        self.arch_loader = DeviceLoader(arch_set.to(device), cfg.batch_size, self.generators["arch"], **loader)
        self.classes = weight_set.classes
        self.model = build_search_model(cfg, len(self.classes), self.generators["gumbel"]).to(device)
        if cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.step = SearchStep(cfg, self.model, device)
        self.weight_opt, self.arch_opt = self.step.weight_opt, self.step.arch_opt
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.weight_opt, cfg.epochs, eta_min=cfg.lr_min)
        self.epoch = 0
        log.info("search: %s/%s/%s on %s (%d weight, %d arch images, %d classes) on %s", cfg.space, cfg.method,
                 cfg.objective, cfg.data, len(weight_set), len(arch_set), len(self.classes), device)

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
            "rng": {**rng_states(self.device), **{k: g.get_state() for k, g in self.generators.items()}},
            "config": dataclasses.asdict(self.cfg),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.weight_opt.load_state_dict(state["weight_optimizer"])
        self.arch_opt.load_state_dict(state["arch_optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        set_rng_states(state["rng"], self.device)
        for name, gen in self.generators.items():
            gen.set_state(state["rng"][name])
        self.epoch = state["epoch"]

    # ---- the epoch ------------------------------------------------------------------------------
    def _run_epoch(self) -> dict[str, Any]:
        cfg, epoch = self.cfg, self.epoch
        if self.method.relaxation == "gumbel":
            self.model.relax.tau = gumbel_temperature(cfg, epoch)
        learn_arch = epoch >= cfg.warmup_epochs
        lr = self.weight_opt.param_groups[0]["lr"]
        for cb in self.callbacks:
            cb.on_epoch_start(epoch, cfg.epochs, len(self.weight_loader))
        start = time.perf_counter()
        self.model.train()
        totals = torch.zeros(6, device=self.device)  # loss, correct, n (weights); loss, correct, n (arch)
        arch_batches = self._arch_batches()
        for step, (x, y) in enumerate(self.weight_loader):
            if learn_arch:
                totals[3:] += self.step.arch_step(*next(arch_batches))
            totals[:3] += self.step.weight_step(x, y)
            if self.callbacks:  # metrics once per step, and only when someone listens
                metrics = {"loss": totals[0] / totals[2], "acc": totals[1] / totals[2],
                           "entropy": self.model.arch.entropy()}
                for cb in self.callbacks:
                    cb.on_step(step, metrics)
        self.scheduler.step()
        self.epoch += 1
        return self._epoch_record(totals.tolist(), lr, time.perf_counter() - start)

    def _arch_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Architecture batches for one epoch: a fresh shuffle of the architecture set, cycled if short."""
        while True:
            yield from self.arch_loader

    def _epoch_record(self, totals: list[float], lr: float, seconds: float) -> dict[str, Any]:
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
            "seconds": seconds,
        }
        if self.method.relaxation == "gumbel":
            record["tau"] = self.model.relax.tau
        if self.table is not None:
            record["oracle"] = self.table.query(genotype)
        return record

    def _result(self) -> dict[str, Any]:
        records = read_log(self.run_dir)
        last = records[-1]
        return {
            "genotype": last["genotype"],
            "arch_weights": last["arch_weights"],
            "ops": last["ops"],
            "entropy": last["entropy"],
            "train_acc": last["train_acc"],
            "oracle": last.get("oracle"),
            "epochs": self.epoch,
            "search_seconds": sum(r["seconds"] for r in records),
            "classes": list(self.classes),
        }


def load_config(run_dir: str | os.PathLike) -> SearchConfig:
    """The resolved config a run directory was started with."""
    return read_config(run_dir, SearchConfig)


def run_search(cfg: SearchConfig, run_dir: str | os.PathLike, device: torch.device | str = "cpu",
               callbacks: Sequence[SearchCallback] = (), resume: bool = False,
               cache_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Run (or with resume=True, continue) a search; returns the result dict also written to result.json."""
    return run_or_resume(Search, SearchConfig, cfg, run_dir, device, callbacks, resume, cache_dir)


__all__ = ["SearchConfig", "Search", "SearchStep", "SearchCallback", "run_search", "load_config",
           "build_search_model", "gumbel_temperature", "OBJECTIVES"]
