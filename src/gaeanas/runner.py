"""The runner core shared by search and from-scratch training: seeded set-up, SGD on a cosine schedule, the
weight step, the epoch loop in a run directory, and sets of runs that reuse finished runs and resume started ones."""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import multiprocessing
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

import torch
import torch.nn.functional as F

from .data import DeviceLoader, ImageDataset
from .errors import ConfigError, DataError, DivergenceError, RunDirError
from .rundir import (CHECKPOINT_FILE, CONFIG_FILE, RESULT_FILE, append_log, claimed_run_dir, config_identity,
                     read_checkpoint, read_config, read_json, read_log, write_checkpoint, write_config, write_json,
                     write_log)
from .runtime import autocast

log = logging.getLogger(__name__)


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Run the block with the global torch RNG seeded; the caller's RNG state is restored afterwards."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def cosine_with_restarts(base_lr: float, lr_min: float, epoch: int, cycle: int, decay: float = 0.5) -> float:
    """The GAEA reference code's cosine (cnn/lr_schedulers.py, CosinePowerAnnealing with power 1): from base_lr
    down to lr_min over `cycle` epochs, then again from a peak multiplied by `decay` at each new cycle."""
    peak = base_lr * decay ** (epoch // cycle)
    return lr_min + (peak - lr_min) * 0.5 * (1 + math.cos(math.pi * (epoch % cycle) / cycle))


class CosineRestarts(torch.optim.lr_scheduler.LRScheduler):
    """Per-epoch learning rate cosine_with_restarts(base, lr_min, epoch, cycle)."""

    def __init__(self, optimizer: torch.optim.Optimizer, cycle: int, lr_min: float) -> None:
        self.cycle, self.lr_min = cycle, lr_min
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:  # type: ignore[override]
        return [cosine_with_restarts(base, self.lr_min, self.last_epoch, self.cycle) for base in self.base_lrs]


def sgd_with_cosine(params: Sequence[torch.nn.Parameter], cfg: Any, nesterov: bool = False, cycle: int = 0
                    ) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.LRScheduler]:
    """SGD (cfg.lr, cfg.momentum, cfg.weight_decay, nesterov) whose rate follows a cosine from cfg.lr to cfg.lr_min
    (the scheduler steps once per epoch): over cfg.epochs epochs when cycle is 0, otherwise over `cycle` epochs,
    restarting with the peak halved (the GAEA reference code)."""
    optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                                nesterov=nesterov)
    if cycle:
        return optimizer, CosineRestarts(optimizer, cycle, cfg.lr_min)
    return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.epochs, eta_min=cfg.lr_min)


def sgd_step(loss: torch.Tensor, params: Sequence[torch.nn.Parameter], optimizer: torch.optim.Optimizer,
             grad_clip: float) -> None:
    """One update of `params` on `loss`: gradients of `params` only, clipped to grad_clip L2 norm (0: no clip)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward(inputs=list(params))
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()


def training_loader(ds: ImageDataset, cfg: Any, generator: torch.Generator, device: torch.device,
                    mean: torch.Tensor, std: torch.Tensor, cutout: int = 0, drop_last: bool = False) -> DeviceLoader:
    """Shuffled, augmented batches of cfg.batch_size (random crop with cfg.crop_pad, cfg.flip, Cutout) on device."""
    return DeviceLoader(ds.to(device), cfg.batch_size, generator, augment=cfg.crop_pad > 0 or cfg.flip,
                        crop_pad=cfg.crop_pad, flip=cfg.flip, mean=mean, std=std, channels_last=cfg.channels_last,
                        cutout=cutout, drop_last=drop_last)


def evaluation_loader(ds: ImageDataset, cfg: Any, device: torch.device, mean: torch.Tensor, std: torch.Tensor
                      ) -> DeviceLoader:
    """Batches of cfg.batch_size in order, without augmentation: nothing random."""
    return DeviceLoader(ds.to(device), cfg.batch_size, torch.Generator(device=device), augment=False, shuffle=False,
                        mean=mean, std=std, channels_last=cfg.channels_last)


@torch.no_grad()
def evaluate(forward: Callable[[torch.Tensor], torch.Tensor], loader: DeviceLoader, device: torch.device,
             precision: str) -> tuple[float, float]:
    """(mean cross-entropy, accuracy in %) of forward(x) -> logits over the loader, under the precision's autocast;
    the caller sets eval mode."""
    totals = torch.zeros(3, device=device)
    for x, y in loader:
        with autocast(device, precision):
            logits = forward(x)
        loss = F.cross_entropy(logits.float(), y, reduction="sum")
        totals += torch.stack([loss, (logits.argmax(dim=1) == y).sum().float(), loss.new_tensor(len(y))])
    loss, correct, n = totals.tolist()
    return loss / n, 100.0 * correct / n


class EpochCallback(Protocol):
    """Hooks a training loop (search or from-scratch) calls; all optional to implement (see NullCallback)."""

    def on_epoch_start(self, epoch: int, epochs: int, steps: int) -> None: ...
    def on_step(self, step: int, metrics: dict[str, torch.Tensor]) -> None: ...
    def on_epoch_end(self, record: dict[str, Any]) -> None: ...


class NullCallback:
    """A callback that does nothing; subclass and override what you need."""

    def on_epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        pass

    def on_step(self, step: int, metrics: dict[str, torch.Tensor]) -> None:
        pass

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        pass


def check_finite(values: dict[str, torch.Tensor], epoch: int, step: int) -> None:
    """DivergenceError naming each of `values` (what -> tensor) that holds a NaN or an infinity.

    One device sync per call: the common case is a single check of all values together."""
    if bool(torch.isfinite(torch.cat([v.detach().reshape(-1).float() for v in values.values()])).all()):
        return
    bad = []
    for what, value in values.items():
        value = value.detach().float()
        if not bool(torch.isfinite(value).all()):
            bad.append(f"{what} ({'NaN' if bool(torch.isnan(value).any()) else 'infinite'})")
    raise DivergenceError(f"the run diverged at epoch {epoch + 1}, step {step + 1}: non-finite values in {', '.join(bad)}")


class EpochRunner:
    """An epoch loop that lives in a run directory: config.json, log.jsonl, checkpoint.pt, result.json.

    Subclasses set cfg (with record() and KIND), run_dir, device, callbacks, epoch and data (what the run's data
    looked like: name, classes, image count), and implement state_dict(), load_state_dict(), _run_epoch() (one
    epoch; returns its log record; raises DivergenceError on a non-finite number) and _result() (from
    self.records, the log's records).
    """

    cfg: Any
    run_dir: Path
    device: torch.device
    callbacks: list
    epoch: int
    data: dict[str, Any]
    records: list[dict[str, Any]]
    divergence_hint = "a lower --lr may help"

    writes = True  # False on the ranks of a data-parallel run other than rank 0: they read the run directory only

    def run(self) -> dict[str, Any]:
        """Run the remaining epochs, logging and checkpointing each one; write and return result.json."""
        settings = self.cfg.record()
        identity = config_identity(settings)
        if self.writes:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self._restore(identity)  # first, so that a refused resume leaves the run directory as it was
        if self.writes:
            write_config(self.run_dir, settings, self.device, self.cfg.KIND)
        while self.epoch < self.cfg.epochs:
            try:
                record = self._run_epoch()
            except DivergenceError as err:
                raise DivergenceError(f"{err}; {self._kept()}; {self.divergence_hint}") from None
            self.records.append(record)
            if self.writes:
                append_log(self.run_dir, record)
                write_checkpoint(self.run_dir, {**self.state_dict(), "log": self.records, "data": self.data},
                                 identity)
            for cb in self.callbacks:
                cb.on_epoch_end(record)
        result = self._result()
        if self.writes:
            write_json(self.run_dir / RESULT_FILE, result)
        return result

    def _kept(self) -> str:
        """What a stopped run leaves: its last good checkpoint, or nothing."""
        if (self.run_dir / CHECKPOINT_FILE).exists():
            return f"its last good checkpoint, after epoch {self.epoch}, is kept in {self.run_dir}"
        return "no epoch had finished, so nothing was kept"

    def _restore(self, identity: str) -> None:
        """Continue from the checkpoint if there is one; log.jsonl is rewritten from the checkpoint's records."""
        state = read_checkpoint(self.run_dir, self.device, identity)
        if state is None:  # nothing to continue from: any logged epochs are stale
            self.records = []
            if self.writes:
                write_log(self.run_dir, [])
            return
        self._check_same_data(state.get("data"))
        self.load_state_dict(state)
        self.records = state["log"] if "log" in state else self._legacy_records()
        if self.writes:
            write_log(self.run_dir, self.records)
        log.info("resumed %s after epoch %d", self.run_dir, self.epoch)

    def _check_same_data(self, saved: dict[str, Any] | None) -> None:
        """DataError when the run's data changed since it began (other classes or another number of images)."""
        if saved is None:  # checkpoints of 0.2 did not record it
            return
        was, now = saved, self.data
        if len(was["classes"]) != len(now["classes"]):
            change = f"{len(now['classes'])} classes, the run began with {len(was['classes'])}"
        elif was["classes"] != now["classes"]:
            change = f"classes {now['classes'][:5]}..., the run began with {was['classes'][:5]}..."
        elif was["images"] != now["images"]:
            change = f"{now['images']} images, the run began with {was['images']}"
        else:
            return
        raise DataError(f"the data {now['name']} has changed since this run began: it now has {change}; restore it, "
                        "or start a new run")

    def _legacy_records(self) -> list[dict[str, Any]]:
        """The log records of a 0.2 checkpoint (which did not hold them): log.jsonl's, up to the checkpoint."""
        records = [r for r in read_log(self.run_dir) if r["epoch"] <= self.epoch]
        if len(records) != self.epoch:
            raise RunDirError(f"{self.run_dir}/log.jsonl holds {len(records)} of the {self.epoch} epochs its "
                              "checkpoint has run; the run's history is lost, start it again")
        return records

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def _run_epoch(self) -> dict[str, Any]:
        raise NotImplementedError

    def _result(self) -> dict[str, Any]:
        raise NotImplementedError


RunnerFactory = Callable[..., EpochRunner]  # (cfg, run_dir, device, callbacks, cache_dir) -> runner


def run_or_resume(runner: RunnerFactory, config_cls: type, cfg: Any, run_dir: str | os.PathLike,
                  device: torch.device | str, callbacks: Any, resume: bool, cache_dir: Any) -> dict[str, Any]:
    """Start `runner(cfg, path, device, callbacks, cache_dir).run()` in a new run directory, or continue one
    from its own config.json (resume=True, cfg ignored). Returns the result dict."""
    with claimed_run_dir(run_dir, resume) as path:
        if resume:
            cfg = read_config(path, config_cls)
        return runner(cfg, path, torch.device(device), callbacks, cache_dir).run()


def same_setup(saved: Any, wanted: Any, ignore: frozenset[str]) -> bool:
    """Whether a saved config records the wanted settings, apart from `ignore` and settings wanted as None."""
    have, want = saved.record(), wanted.record()
    return all(have.get(k) == v for k, v in want.items() if k not in ignore and v is not None)


@dataclasses.dataclass(frozen=True)
class PlannedRun:
    """One run of a set: its directory and the config it is to have."""

    path: Path
    cfg: Any


def saved_matching(planned: PlannedRun, config_cls: type, ignore: frozenset[str],
                   mismatch: str = "holds a run with other settings") -> Any:
    """The config a planned run's directory was started with (None when not started); a ConfigError saying
    `mismatch` when it differs from the plan apart from `ignore`."""
    if not (planned.path / CONFIG_FILE).is_file():
        return None
    saved = read_config(planned.path, config_cls)
    if not same_setup(saved, planned.cfg, ignore):
        raise ConfigError(f"{planned.path} {mismatch}; move it away or use another results folder")
    return saved


def run_set(runs: Sequence[PlannedRun], runner: RunnerFactory, config_cls: type, device: torch.device,
            callbacks: Sequence[EpochCallback], cache_dir: Any, ignore: frozenset[str],
            refresh: dict[str, Any], on_run_start: Callable[[int, bool], None] | None = None,
            mismatch: str = "holds a run with other settings") -> list[dict[str, Any]]:
    """Run each planned run: a finished one (result.json) is reused, a started one resumed from its own config
    (with `refresh` applied, e.g. the device), a new one started. A started run whose saved config differs from
    the plan (apart from `ignore`) is an error. Each runner is built, loading its data, before
    on_run_start(index, reused) is called, so bad input fails before anything is written."""
    results = []
    for index, planned in enumerate(runs):
        saved = saved_matching(planned, config_cls, ignore, mismatch)
        started = saved is not None
        if (planned.path / RESULT_FILE).is_file():
            if on_run_start is not None:
                on_run_start(index, True)
            results.append(read_json(planned.path / RESULT_FILE))
            continue
        with claimed_run_dir(planned.path, resume=started) as path:
            run = runner(dataclasses.replace(saved or planned.cfg, **refresh), path, device, callbacks, cache_dir)
            if on_run_start is not None:
                on_run_start(index, False)
            results.append(run.run())
    return results


@dataclasses.dataclass
class WorkerOutcome:
    """How one job ended in its worker process: its exit code (negative: killed by that signal) and its log."""

    name: str
    exitcode: int
    log: Path


@dataclasses.dataclass(frozen=True)
class WorkerJob:
    """One run for a worker process: target(*args) runs there, its output going to logs_dir/<name>.txt."""

    name: str
    target: Callable[..., Any]
    args: tuple


def _worker_main(job: WorkerJob, threads: int, log: str) -> None:
    """A worker process: the job with `threads` threads, stdout and stderr appended to `log`."""
    with open(log, "a", buffering=1) as stream:
        os.dup2(stream.fileno(), 1)
        os.dup2(stream.fileno(), 2)
        sys.stdout, sys.stderr = stream, stream
        torch.set_num_threads(threads)
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {job.name}: {threads} thread(s)", flush=True)
        job.target(*job.args)
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {job.name}: finished", flush=True)


def run_in_workers(jobs: Sequence[WorkerJob], workers: int, logs_dir: str | os.PathLike,
                   on_event: Callable[[str, WorkerJob, Any], None] | None = None) -> list[WorkerOutcome]:
    """Run the jobs `workers` at a time, each in its own (spawned) process with its share of the CPU threads.
    A worker that dies loses only its own job. on_event("start", job, process) and on_event("end", job, outcome)
    report progress; returns the outcomes in the order the jobs ended."""
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    logs = Path(logs_dir)
    logs.mkdir(parents=True, exist_ok=True)
    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")
    pending, running, outcomes = list(jobs), {}, []
    while pending or running:
        while pending and len(running) < workers:
            job = pending.pop(0)
            log = str(logs / f"{job.name}.txt")
            process = context.Process(target=_worker_main, name=job.name, args=(job, threads, log))
            process.start()
            running[process] = job
            if on_event is not None:
                on_event("start", job, process)
        for process in [p for p in running if not p.is_alive()]:
            process.join()
            job = running.pop(process)
            outcome = WorkerOutcome(job.name, process.exitcode, logs / f"{job.name}.txt")
            outcomes.append(outcome)
            if on_event is not None:
                on_event("end", job, outcome)
        time.sleep(0.2)
    return outcomes


RAY_HINT = "--ray needs Ray, an optional extra: pip install 'gaeanas[ray]' (or pip install ray)"


def run_on_ray(jobs: Sequence[WorkerJob], address: str, logs_dir: str | os.PathLike, cpus: float = 1.0,
               gpus: float = 0.0, on_event: Callable[[str, WorkerJob, Any], None] | None = None
               ) -> list[WorkerOutcome]:
    """One Ray task per job, each asking for `cpus` CPUs and `gpus` GPUs and run in a fresh worker process; its
    output goes to logs_dir/<name>.txt (on a cluster, put the results folder on storage every node shares).
    address: a Ray cluster's address, "auto" for the one this machine belongs to, or "local" to start Ray here
    (an already initialised Ray is used as it is). A task whose worker dies or raises loses only its own job."""
    try:
        import ray
    except ImportError:
        raise ConfigError(RAY_HINT) from None
    if not ray.is_initialized():
        ray.init(address=None if address == "local" else address, log_to_driver=False)
    logs = Path(logs_dir)
    logs.mkdir(parents=True, exist_ok=True)
    task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_calls=1, max_retries=0)(_worker_main)
    pending = {}
    for job in jobs:
        ref = task.remote(job, max(1, int(cpus)), str(logs / f"{job.name}.txt"))
        pending[ref] = job
        if on_event is not None:
            on_event("start", job, ref)
    outcomes = []
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        job = pending.pop(done[0])
        try:
            ray.get(done[0])
            code = 0
        except ray.exceptions.WorkerCrashedError:
            code = -9
        except ray.exceptions.RayError:
            code = 1
        outcome = WorkerOutcome(job.name, code, logs / f"{job.name}.txt")
        outcomes.append(outcome)
        if on_event is not None:
            on_event("end", job, outcome)
    return outcomes


@dataclasses.dataclass(frozen=True)
class Launch:
    """Where independent runs go: `workers` local processes, or Ray (`ray`: its address) with per-run resources."""

    workers: int = 1
    ray: str | None = None
    ray_cpus: float = 1.0
    ray_gpus: float = 0.0

    def run(self, jobs: Sequence[WorkerJob], logs_dir: str | os.PathLike,
            on_event: Callable[[str, WorkerJob, Any], None] | None = None) -> list[WorkerOutcome]:
        if self.ray is not None:
            return run_on_ray(jobs, self.ray, logs_dir, self.ray_cpus, self.ray_gpus, on_event)
        return run_in_workers(jobs, self.workers, logs_dir, on_event)


__all__ = ["saved_matching", "Launch", "WorkerJob", "WorkerOutcome", "run_in_workers", "run_on_ray", "seeded", "sgd_with_cosine", "sgd_step", "training_loader", "check_finite", "EpochCallback", "NullCallback",
           "EpochRunner", "run_or_resume", "same_setup", "PlannedRun", "run_set"]
