"""Training a discovered cell from scratch, one seed or several: DARTS-space networks (GAEA appendix C.1.2, after
DARTS) and NAS-Bench-201 networks with the benchmark's recipe (Dong & Yang, ICLR 2020)."""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .data import ImageDataset, channel_stats, has_test_split, load_dataset, seeded_subset, stratified_holdout
from .distributed import DataParallel, data_parallel
from .errors import ConfigError, DataError
from .report import mean_std
from .rundir import (CONFIG_FILE, RESULT_FILE, check_run_settings, config_from_dict, flag, opt, read_config, read_json,
                     write_json)
from .runner import (EpochCallback, EpochRunner, Launch, PlannedRun, WorkerJob, WorkerOutcome, check_finite,
                     evaluate, evaluation_loader, run_or_resume, run_set, saved_matching, seeded, sgd_step,
                     sgd_with_cosine, training_loader)
from .runtime import PRECISIONS, autocast, resolve_device
from .spaces.darts_eval import (NetworkCIFAR, NetworkImageNet, count_multiply_adds, count_parameters,
                                drop_path_schedule)
from .spaces.darts_genotypes import PUBLISHED, load_genotype
from .spaces.nb201 import load_nb201_genotype
from .spaces.nb201_eval import NetworkNB201

log = logging.getLogger(__name__)

NETWORKS: dict[str, type[nn.Module]] = {"cifar": NetworkCIFAR, "imagenet": NetworkImageNet}
SUMMARY_FILE, SEEDS_FILE = "summary.json", "seeds.json"
SUBSET_SEED = 0  # --subset / --test-subset pick the same images whatever the training seed
DEFAULT_AUXILIARY_WEIGHT = 0.4  # DARTS


@dataclass
class TrainConfig:
    """Everything that defines a from-scratch training. Defaults depend on the genotype's space: DARTS networks
    follow the paper's CIFAR-10 setting (C.1.2), NAS-Bench-201 networks the benchmark's own recipe."""

    KIND: ClassVar[str] = "train"  # what config.json's run_info calls this kind of run
    # what to train
    genotype: str | None = opt(None, "the cell: a published name (DARTS_V2, PC_DARTS), random:SEED (a uniformly "
                                     "random DARTS cell), a NAS-Bench-201 string (|op~0|+|op~0|op~1|+...), a genotype "
                                     "file, a search or train run directory, or the genotype text")
    space: str | None = opt(None, "darts or nb201; default: the genotype's")
    network: str | None = opt(None, "darts space: cifar (3x3 stem at full resolution) or imagenet (the mobile "
                                    "setting's stride-2 stems); default: cifar")
    channels: int | None = opt(None, "C, channels of the first cells, doubled at each reduction; default: darts 36 "
                                     "(ImageNet mobile: 48), nb201 16")
    cells: int | None = opt(None, "darts: L, cells in all, reductions at L//3 and 2L//3 (default 20); nb201: N, "
                                  "cells per stage (default 5)")
    auxiliary: bool | None = opt(None, "darts space: auxiliary classifier after cell 2L//3, used in training only; "
                                       "default: on")
    auxiliary_weight: float | None = opt(None, "weight of the auxiliary head's cross-entropy in the training loss "
                                               "(with --auxiliary); default: 0.4")
    drop_path: float | None = opt(None, "darts space: drop-path probability at the end of training, linear from 0 "
                                        "(epoch e of E uses drop_path * e / E); 0 disables; default: 0.3")
    # data
    data: str = opt("cifar10", "cifar10 (downloaded), digits (bundled), or a path: an image folder (one subfolder "
                               "per class), a folder with train/ and test/ image folders, or a CIFAR python release")
    resize: int | None = opt(None, "pixels; resize every image to resize x resize")
    subset: int | None = opt(None, "images; a fixed random subset of the training split (the same for every seed)")
    test_subset: int | None = opt(None, "images; a fixed random subset of the test split")
    holdout: float | None = opt(None, "share of each class held out as the test split when the data has no test "
                                      "split of its own (seeded, stratified; never trained on); default: 0.1")
    crop_pad: int = opt(4, "pixels of zero padding for the random crop; 0 disables it")
    flip: bool = opt(True, "random horizontal flips")
    cutout: int | None = opt(None, "pixels; side of the square Cutout zeroes in each normalised training image; 0 "
                                   "disables; default: darts 16, nb201 0")
    # optimisation
    epochs: int | None = opt(None, "passes over the training set; default: darts 600, nb201 200")
    batch_size: int | None = opt(None, "images per step; default: darts 128, nb201 256")
    lr: float | None = opt(None, "SGD learning rate at the first epoch (per batch-mean loss); default: darts 0.025, "
                                 "nb201 0.1")
    lr_min: float = opt(0.0, "cosine schedule's floor, reached after the last epoch")
    momentum: float = opt(0.9, "SGD momentum")
    nesterov: bool | None = opt(None, "Nesterov momentum; default: darts off, nb201 on")
    weight_decay: float | None = opt(None, "L2 coefficient on every weight; default: darts 3e-4, nb201 5e-4")
    grad_clip: float | None = opt(None, "max L2 norm of the gradient; 0 disables; default: darts 5, nb201 0")
    # run
    seed: int = opt(0, "seeds initialisation, data order, augmentation and drop-path (0 to 2**32 - 1)")
    device: str = opt("auto", "auto, cpu or cuda")
    precision: str = opt("fp32", "fp32 or bf16 (autocast; parameters and optimizer stay fp32)")
    channels_last: bool = opt(True, "channels_last memory format for images and weights")

    def resolved(self) -> "TrainConfig":
        """A validated copy with the space's defaults filled in and the genotype as a published name or its text.

        Resolving a file or run directory here keeps a run self-contained: resuming it does not
        depend on that file staying as it was.
        """
        if not self.genotype:
            raise ConfigError("no genotype given: pass --genotype with a published name "
                              f"({', '.join(PUBLISHED)}), a NAS-Bench-201 string, a genotype file, or a search run "
                              "directory")
        space = self.space or genotype_space(self.genotype)
        if space not in SPACE_DEFAULTS:
            raise ConfigError(f"unknown space {space!r}; known: {sorted(SPACE_DEFAULTS)}")
        refused = [name for name in SPACE_ONLY.get(space, ()) if getattr(self, name) is not None]
        if refused:
            raise ConfigError(f"{flag(refused[0])} does not apply to {space} networks (it belongs to the DARTS "
                              "space's evaluation network)")
        filled = dataclasses.replace(self, space=space, **{name: value for name, value in SPACE_DEFAULTS[space].items()
                                                          if getattr(self, name) is None})
        if filled.auxiliary_weight is not None and filled.auxiliary is False:
            raise ConfigError(f"{flag('auxiliary_weight')} does not apply with --no-auxiliary (there is no auxiliary head)")
        if filled.auxiliary:
            filled.auxiliary_weight = DEFAULT_AUXILIARY_WEIGHT if filled.auxiliary_weight is None else filled.auxiliary_weight
        if self.holdout is not None and has_test_split(self.data):
            raise ConfigError(f"--holdout does not apply: {self.data!r} has a test split of its own, which is used")
        filled.validate()
        if space == "nb201":
            return dataclasses.replace(filled, genotype=str(load_nb201_genotype(self.genotype)))
        if self.genotype in PUBLISHED:
            return filled
        return dataclasses.replace(filled, genotype=str(load_genotype(self.genotype)))

    def validate(self) -> None:
        """Raise ConfigError naming the first out-of-range setting of a resolved config."""
        check_run_settings(self)
        if self.space == "darts" and self.network not in NETWORKS:
            raise ConfigError(f"unknown network {self.network!r}; known: {sorted(NETWORKS)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r}; known: {PRECISIONS}")
        for name in ("channels", "cells", "epochs", "batch_size", "lr"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{flag(name)} must be > 0, got {getattr(self, name)}")
        for name in ("auxiliary_weight", "crop_pad", "cutout", "lr_min", "momentum", "weight_decay", "grad_clip"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ConfigError(f"{flag(name)} must be >= 0, got {getattr(self, name)}")
        if self.drop_path is not None and not 0.0 <= self.drop_path < 1.0:
            raise ConfigError(f"--drop-path must be in [0, 1), got {self.drop_path}")
        if self.holdout is not None and not 0.0 < self.holdout < 1.0:
            raise ConfigError(f"--holdout must be strictly between 0 and 1, got {self.holdout}")
        if self.channels % 2:
            raise ConfigError(f"--channels must be even (factorized reductions halve them), got {self.channels}")
        for name in ("subset", "test_subset"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{flag(name)} must be at least 1 image, got {getattr(self, name)}")

    def record(self) -> dict[str, Any]:
        """The settings this training uses (what config.json keeps): all but those its network has no use for."""
        values = dataclasses.asdict(self)
        unused = SPACE_ONLY.get(self.space or "", ())
        for name in (*unused, *(() if self.auxiliary else ("auxiliary_weight",))):
            values.pop(name, None)
        return values

    @classmethod
    def from_saved(cls, values: dict[str, Any]) -> "TrainConfig":
        """From a config.json. One written by 0.1 kept the auxiliary weight even without the auxiliary head; one
        written before 0.4 trained DARTS networks only, had no space, nesterov or holdout (and no held-out split:
        its data had a test split or it was scored on its training images)."""
        if values.get("auxiliary") is False:
            values = {k: v for k, v in values.items() if k != "auxiliary_weight"}
        if "space" not in values:
            values = {"space": "darts", "nesterov": False, **values}
        return cls.from_dict(values)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """Build from a dict (e.g. config.json), rejecting unknown keys."""
        return config_from_dict(cls, values)


# space -> the defaults of its settings that depend on it
SPACE_DEFAULTS: dict[str, dict[str, Any]] = {
    # GAEA appendix C.1.2, after DARTS
    "darts": dict(network="cifar", channels=36, cells=20, auxiliary=True, drop_path=0.3, cutout=16, epochs=600,
                  batch_size=128, lr=0.025, nesterov=False, weight_decay=3e-4, grad_clip=5.0),
    # NAS-Bench-201's training of every architecture: 200 epochs, SGD nesterov, lr 0.1 cosine, wd 5e-4, batch 256
    "nb201": dict(channels=16, cells=5, cutout=0, epochs=200, batch_size=256, lr=0.1, nesterov=True,
                  weight_decay=5e-4, grad_clip=0.0),
}
# space -> settings its network does not have (giving one is an error)
SPACE_ONLY: dict[str, tuple[str, ...]] = {"nb201": ("network", "auxiliary", "auxiliary_weight", "drop_path")}


def genotype_space(spec: str) -> str:
    """'nb201' for a NAS-Bench-201 string, or a file or run directory holding one; else 'darts'."""
    text = str(spec).strip()
    if text.startswith("|"):
        return "nb201"
    path = Path(text)
    try:
        if path.is_dir() and (path / CONFIG_FILE).is_file():
            saved = read_json(path / CONFIG_FILE)
            if isinstance(saved, dict) and saved.get("space") in SPACE_DEFAULTS:
                return saved["space"]
        if path.is_file() and path.stat().st_size < 4096:
            return "nb201" if path.read_text(errors="replace").strip().startswith("|") else "darts"
    except OSError:
        pass
    return "darts"


def build_network(cfg: TrainConfig, genotype: Any, num_classes: int) -> nn.Module:
    """The evaluation network for a resolved config (initialised from the global torch RNG)."""
    if cfg.space == "nb201":
        return NetworkNB201(genotype, cfg.channels, cfg.cells, num_classes)
    return NETWORKS[cfg.network](genotype, cfg.channels, cfg.cells, num_classes, cfg.auxiliary)


def network_name(cfg: TrainConfig) -> str:
    """The evaluation network's name: nb201, or the DARTS space's cifar / imagenet."""
    return "nb201" if cfg.space == "nb201" else cfg.network


def load_cell(cfg: TrainConfig) -> Any:
    """The genotype object of a resolved config."""
    return load_nb201_genotype(cfg.genotype) if cfg.space == "nb201" else load_genotype(cfg.genotype)


def training_loss(logits: torch.Tensor, aux_logits: torch.Tensor | None, y: torch.Tensor,
                  aux_weight: float) -> torch.Tensor:
    """Cross-entropy of the main head plus aux_weight times that of the auxiliary head (when present)."""
    loss = F.cross_entropy(logits.float(), y)
    if aux_logits is not None:
        loss = loss + aux_weight * F.cross_entropy(aux_logits.float(), y)
    return loss


SEED_IGNORES = frozenset({"seed", "device"})  # what may differ between the trainings of one set of seeds
HOLDOUT_SEED = 0  # the held-out test split is the same whatever the training seed
DEFAULT_HOLDOUT = 0.1


def load_train_data(cfg: TrainConfig, cache_dir: str | os.PathLike | None = None
                    ) -> tuple[ImageDataset, ImageDataset, str]:
    """(training split, test split, where the test split comes from), each cut to its subset.

    The test split is the data's own (its `test/` folder, the official test set) when it has one; otherwise a
    seeded, stratified share `cfg.holdout` of the training images, which are then never trained on.
    """
    train = load_dataset(cfg.data, "train", resize=cfg.resize, cache_dir=cache_dir)
    if has_test_split(cfg.data):
        test = load_dataset(cfg.data, "test", resize=cfg.resize, cache_dir=cache_dir)
        if train.classes != test.classes:
            raise DataError(f"the train and test splits of {cfg.data!r} have different classes: "
                            f"{train.classes[:5]}... vs {test.classes[:5]}...")
        source = "the data's own test split"
    else:
        fraction = DEFAULT_HOLDOUT if cfg.holdout is None else cfg.holdout
        train, test = stratified_holdout(train, fraction, HOLDOUT_SEED)
        source = (f"{len(test)} images held out of the training images ({fraction:.0%} of each class, seed "
                  f"{HOLDOUT_SEED}; never trained on)")
    if cfg.subset is not None:
        train = seeded_subset(train, cfg.subset, SUBSET_SEED)
    if cfg.test_subset is not None:
        test = seeded_subset(test, cfg.test_subset, SUBSET_SEED)
    return train, test, source


class Trainer(EpochRunner):
    """One from-scratch training in one run directory; `run()` starts it or continues it from its checkpoint."""

    def __init__(self, cfg: TrainConfig, run_dir: str | os.PathLike, device: torch.device,
                 callbacks: Sequence[EpochCallback] = (), cache_dir: str | os.PathLike | None = None,
                 dp: DataParallel | None = None) -> None:
        """dp: this process's rank in a data-parallel run (each rank trains on its share of every batch, gradients
        averaged by DistributedDataParallel; only rank 0 writes the run directory); None for one process."""
        self.dp = dp
        self.writes = dp is None or dp.is_main
        self.cfg = dataclasses.replace(cfg.resolved(), device=str(device))
        self.genotype = load_cell(self.cfg)
        self.run_dir = Path(run_dir)
        self.device = device
        self.callbacks = list(callbacks)
        self._setup(cache_dir)

    # ---- construction -------------------------------------------------------------------------
    def _setup(self, cache_dir: str | os.PathLike | None) -> None:
        cfg, device = self.cfg, self.device
        train_set, test_set, self.test_source = load_train_data(cfg, cache_dir)
        mean, std = channel_stats(train_set.images)
        self.normalisation = {"mean": [float(v) for v in mean.flatten()], "std": [float(v) for v in std.flatten()]}
        self.generator = torch.Generator(device=device).manual_seed(cfg.seed * 1000)
        self.drop_path_generator = torch.Generator(device=device).manual_seed(cfg.seed * 1000 + 1)
        # A last batch of one image cannot train batch norm where the maps are 1x1 (the auxiliary head): skip it.
        single = len(train_set) % cfg.batch_size == 1 and len(train_set) > 1
        self.train_loader = training_loader(train_set, cfg, self.generator, device, mean, std, cutout=cfg.cutout,
                                            drop_last=single)
        self.test_loader = evaluation_loader(test_set, cfg, device, mean, std)
        self.classes = train_set.classes
        self.image_size = train_set.image_size
        self.data = {"name": cfg.data, "classes": list(self.classes), "images": len(train_set)}
        with seeded(cfg.seed, device):
            self.model = build_network(cfg, self.genotype, len(self.classes)).to(device)
        self.model.drop_path_generator = self.drop_path_generator
        if cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.params = list(self.model.parameters())
        self.forward = self.model if self.dp is None else data_parallel(self.model)
        self.optimizer, self.scheduler = sgd_with_cosine(self.params, cfg, nesterov=cfg.nesterov)
        self.epoch = 0
        log.info("train: %s network (C=%d, %s=%d) on %s (%d train, %d test images, %d classes) on %s",
                 network_name(cfg), cfg.channels, "N" if cfg.space == "nb201" else "L", cfg.cells, cfg.data,
                 len(train_set), len(test_set), len(self.classes), device)
        log.info("train: the test split is %s", self.test_source)

    # ---- checkpointing -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-for-bit: weights, optimizer, schedule, RNG states, epoch."""
        return {"epoch": self.epoch, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "rng": {"data": self.generator.get_state(), "drop_path": self.drop_path_generator.get_state()},
                "config": self.cfg.record()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["rng"]["data"])
        if "drop_path" in state["rng"]:  # checkpoints of 0.1 drew drop-path from the global RNG
            self.drop_path_generator.set_state(state["rng"]["drop_path"])
        self.epoch = state["epoch"]

    def _run_epoch(self) -> dict[str, Any]:
        cfg, epoch = self.cfg, self.epoch
        self.model.drop_path_prob = drop_path_schedule(cfg.drop_path or 0.0, epoch, cfg.epochs)
        lr = self.optimizer.param_groups[0]["lr"]
        for cb in self.callbacks:
            cb.on_epoch_start(epoch, cfg.epochs, len(self.train_loader))
        start = time.perf_counter()
        self.model.train()
        totals = torch.zeros(3, device=self.device)  # loss * n, correct, n
        for step, (x, y) in enumerate(self.train_loader):
            totals += self._train_step(x, y)
            check_finite({"the training loss": totals[0]}, epoch, step)
            for cb in self.callbacks:
                cb.on_step(step, {"loss": totals[0] / totals[2], "acc": totals[1] / totals[2]})
        check_finite({"the network weights": torch.cat([p.detach().reshape(-1) for p in self.params])}, epoch, step)
        if self.dp is not None:  # the epoch's loss and accuracy over every rank's share
            self.dp.sum_(totals)
        self.scheduler.step()
        test_loss, test_acc = self.evaluate()
        self.epoch += 1
        loss, correct, n = totals.tolist()
        record = {"epoch": self.epoch, "train_loss": loss / n, "train_acc": 100.0 * correct / n,
                  "test_loss": test_loss, "test_acc": test_acc, "lr": lr, "seconds": time.perf_counter() - start}
        if cfg.space == "darts":
            record["drop_path_prob"] = self.model.drop_path_prob
        return record

    def _train_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One SGD update on (x, y); returns (main-head loss * n, correct, n) of this rank's share."""
        weight = 1.0
        if self.dp is not None:
            x, y, weight = self.dp.shard(x, y)
        with autocast(self.device, self.cfg.precision):
            logits, aux_logits = self.forward(x)
        loss = training_loss(logits, aux_logits, y, self.cfg.auxiliary_weight or 0.0)
        sgd_step(loss * weight, self.params, self.optimizer, self.cfg.grad_clip)
        main_loss = F.cross_entropy(logits.detach().float(), y)
        correct = (logits.detach().argmax(dim=1) == y).sum()
        return torch.stack([main_loss * len(y), correct.float(), main_loss.new_tensor(len(y))])

    @torch.no_grad()
    def evaluate(self) -> tuple[float, float]:
        """(mean cross-entropy, accuracy in %) on the test split, in eval mode (no drop-path, no auxiliary head)."""
        self.model.eval()
        try:
            return evaluate(lambda x: self.model(x)[0], self.test_loader, self.device, self.cfg.precision)
        finally:
            self.model.train()

    def _result(self) -> dict[str, Any]:
        records = self.records
        final_acc = records[-1]["test_acc"]
        return {
            "genotype": str(self.genotype),
            "space": self.cfg.space,
            "network": network_name(self.cfg),
            "parameters_m": count_parameters(self.model),
            "multiply_adds_m": count_multiply_adds(self.model, (3, *self.image_size)),
            "image_size": list(self.image_size),
            "test_acc": [r["test_acc"] for r in records],
            "final_test_acc": final_acc,
            "final_test_error": 100.0 - final_acc,
            "epochs": self.epoch,
            "train_seconds": sum(r["seconds"] for r in records),
            "classes": list(self.classes),
            "test_split": self.test_source,
            "normalisation": self.normalisation,
        }


def load_train_config(run_dir: str | os.PathLike) -> TrainConfig:
    """The resolved config a training run directory was started with."""
    return read_config(run_dir, TrainConfig)


def run_training(cfg: TrainConfig, run_dir: str | os.PathLike, device: torch.device | str = "cpu",
                 callbacks: Sequence[EpochCallback] = (), resume: bool = False,
                 cache_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Train (or with resume=True, continue) one network; returns the result dict also written to result.json."""
    return run_or_resume(Trainer, TrainConfig, cfg, run_dir, device, callbacks, resume, cache_dir)


def run_seeds(cfg: TrainConfig, out_dir: str | os.PathLike, seeds: Sequence[int],
              device: torch.device | str = "cpu", callbacks: Sequence[EpochCallback] = (),
              on_run_start: Callable[[int, int, bool], None] | None = None,
              cache_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Train one network per seed into out_dir/seed<N>/ and summarise the final test error (stage 3).

    Finished seeds are reused and started ones resumed, so rerunning continues an interrupted set.
    on_run_start(index, seed, reused) is called before each seed. Writes and returns summary.json:
    per-seed errors and their mean and population standard deviation.
    """
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must be a non-empty list without repeats, got {list(seeds)}")
    out, base, device = Path(out_dir), cfg.resolved(), torch.device(device)
    runs = [PlannedRun(out / f"seed{seed}", dataclasses.replace(base, seed=seed)) for seed in seeds]

    def started(index: int, reused: bool) -> None:  # the first runner is built: the data loaded
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / SEEDS_FILE, {"seeds": list(seeds), "config": base.record()})
        if on_run_start is not None:
            on_run_start(index, seeds[index], reused)

    results = run_set(runs, Trainer, TrainConfig, device, callbacks, cache_dir, ignore=SEED_IGNORES,
                      refresh={"device": str(device)}, on_run_start=started,
                      mismatch="holds a training with other settings")
    summary = summarise(results, seeds)
    write_json(out / SUMMARY_FILE, summary)
    return summary


def summarise(results: Sequence[dict[str, Any]], seeds: Sequence[int]) -> dict[str, Any]:
    """Mean and population std of the final test error over seeds, with the per-seed values."""
    errors = [r["final_test_error"] for r in results]
    mean, std = mean_std(errors)
    first = results[0]
    return {"genotype": first["genotype"], "network": first["network"], "parameters_m": first["parameters_m"],
            "multiply_adds_m": first["multiply_adds_m"], "seeds": list(seeds), "test_errors": errors,
            "mean_test_error": mean, "std_test_error": std, "runs": [f"seed{s}" for s in seeds]}


def _train_seed(cfg: TrainConfig, run_dir: str, device: str, cache_dir: str | None) -> None:
    """One seed's training in a worker process: started, resumed, or left alone when finished."""
    path = Path(run_dir)
    if not (path / RESULT_FILE).is_file():
        run_training(cfg, path, resolve_device(device), resume=(path / CONFIG_FILE).is_file(), cache_dir=cache_dir)


def run_seeds_in_workers(cfg: TrainConfig, out_dir: str | os.PathLike, seeds: Sequence[int],
                         device: torch.device | str, launch: Launch | int,
                         on_event: Callable[[str, WorkerJob, Any], None] | None = None,
                         cache_dir: str | os.PathLike | None = None) -> tuple[dict[str, Any] | None, list[WorkerOutcome]]:
    """run_seeds with the seeds trained in worker processes or Ray tasks (`launch`; an int: that many local
    workers), each seed's output in out_dir/logs/seed<N>.txt. Returns (summary.json's content once every seed has finished, else
    None; the outcomes of the seeds started here)."""
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must be a non-empty list without repeats, got {list(seeds)}")
    out, base = Path(out_dir), cfg.resolved()
    planned = {seed: dataclasses.replace(base, seed=seed) for seed in seeds}
    for seed, wanted in planned.items():
        saved_matching(PlannedRun(out / f"seed{seed}", wanted), TrainConfig, SEED_IGNORES,
                       "holds a training with other settings")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / SEEDS_FILE, {"seeds": list(seeds), "config": base.record()})
    jobs = [WorkerJob(f"seed{seed}", _train_seed, (wanted, str(out / f"seed{seed}"), str(device),
                                                   None if cache_dir is None else str(cache_dir)))
            for seed, wanted in planned.items() if not (out / f"seed{seed}" / RESULT_FILE).is_file()]
    launch = Launch(workers=launch) if isinstance(launch, int) else launch
    outcomes = launch.run(jobs, out / "logs", on_event)
    if not all((out / f"seed{seed}" / RESULT_FILE).is_file() for seed in seeds):
        return None, outcomes
    summary = summarise([read_json(out / f"seed{seed}" / RESULT_FILE) for seed in seeds], seeds)
    write_json(out / SUMMARY_FILE, summary)
    return summary, outcomes


def resume_seeds(out_dir: str | os.PathLike, device: torch.device | str = "cpu",
                 callbacks: Sequence[EpochCallback] = (),
                 on_run_start: Callable[[int, int, bool], None] | None = None,
                 cache_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Continue a multi-seed training from its seeds.json."""
    path = Path(out_dir) / SEEDS_FILE
    if not path.is_file():
        raise ConfigError(f"cannot resume {out_dir}: no {SEEDS_FILE} there (is it a gaeanas train --seeds folder?)")
    saved = read_json(path)
    return run_seeds(TrainConfig.from_saved(saved["config"]), out_dir, saved["seeds"], device, callbacks,
                     on_run_start, cache_dir)


__all__ = ["TrainConfig", "Trainer", "NETWORKS", "build_network", "training_loss",
           "load_train_data", "run_training", "run_seeds", "run_seeds_in_workers", "resume_seeds", "summarise",
           "load_train_config"]
