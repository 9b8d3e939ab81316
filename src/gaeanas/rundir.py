"""Run directories shared by GAEA search and from-scratch training: config fields, files, atomic writes, callbacks."""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import field
from pathlib import Path
from typing import Any, Callable, Protocol, TypeVar

import torch

from .errors import ConfigError

log = logging.getLogger(__name__)

CONFIG_FILE, LOG_FILE, CHECKPOINT_FILE, RESULT_FILE = "config.json", "log.jsonl", "checkpoint.pt", "result.json"

C = TypeVar("C")


def opt(default: Any, help: str) -> Any:
    """A config field with its help text (shown by the CLI, which builds its flags from these fields)."""
    return field(default=default, metadata={"help": help})


def config_from_dict(cls: type[C], values: dict[str, Any]) -> C:
    """Build a config dataclass from a dict (e.g. config.json), rejecting unknown keys."""
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown config key(s) {unknown}")
    return cls(**values)


def read_config(run_dir: str | os.PathLike, cls: type[C]) -> C:
    """The config a run directory was started with (its config.json) as a `cls`."""
    path = Path(run_dir) / CONFIG_FILE
    try:
        return config_from_dict(cls, json.loads(path.read_text()))
    except FileNotFoundError:
        raise ConfigError(f"no {CONFIG_FILE} in {run_dir}") from None
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path} is not valid JSON: {err}") from None


def atomic_write_bytes(path: Path, write: Callable[[Path], Any]) -> None:
    """Call write(tmp_path), then rename over `path`, so a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def write_json(path: Path, payload: Any) -> None:
    """Atomically write pretty JSON."""
    atomic_write_bytes(path, lambda tmp: tmp.write_text(json.dumps(payload, indent=2) + "\n"))


def read_log(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The per-epoch records of a run's log.jsonl."""
    path = Path(run_dir) / LOG_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_log(run_dir: Path, record: dict[str, Any]) -> None:
    """Add one epoch's record to log.jsonl."""
    with open(run_dir / LOG_FILE, "a") as f:
        f.write(json.dumps(record) + "\n")


def truncate_log(run_dir: Path, epoch: int) -> None:
    """Drop log lines written after `epoch` (those of an epoch that never reached its checkpoint)."""
    records = [r for r in read_log(run_dir) if r["epoch"] <= epoch]
    (run_dir / LOG_FILE).write_text("".join(json.dumps(r) + "\n" for r in records))


def write_checkpoint(run_dir: Path, state: dict[str, Any]) -> None:
    """Write checkpoint.pt atomically."""
    atomic_write_bytes(run_dir / CHECKPOINT_FILE, lambda tmp: torch.save(state, tmp))


def read_checkpoint(run_dir: Path, device: torch.device) -> dict[str, Any] | None:
    """The run's checkpoint mapped onto `device`, or None when there is none yet."""
    path = run_dir / CHECKPOINT_FILE
    if not path.exists():
        return None
    return torch.load(path, map_location=device, weights_only=False)


def prepare_run_dir(run_dir: str | os.PathLike, resume: bool) -> Path:
    """A new, empty run directory, or (resume) an existing one that holds a config."""
    path = Path(run_dir)
    if resume:
        if not (path / CONFIG_FILE).is_file():
            raise ConfigError(f"cannot resume {path}: no {CONFIG_FILE} there (is it a gaeanas run directory?)")
        return path
    if path.exists() and any(path.iterdir()):
        raise ConfigError(f"run directory {path} already exists and is not empty; use --resume {path} "
                          "to continue it, or choose another --out")
    return path


class EpochRunner:
    """An epoch loop that lives in a run directory: config.json, log.jsonl, checkpoint.pt, result.json.

    Subclasses set cfg, run_dir, device, callbacks and epoch, and implement state_dict(), load_state_dict(),
    _run_epoch() (one epoch; returns its log record) and _result().
    """

    cfg: Any
    run_dir: Path
    device: torch.device
    callbacks: list
    epoch: int

    def run(self) -> dict[str, Any]:
        """Run the remaining epochs, logging and checkpointing each one; write and return result.json."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_json(self.run_dir / CONFIG_FILE, dataclasses.asdict(self.cfg))
        self._restore()
        while self.epoch < self.cfg.epochs:
            record = self._run_epoch()
            append_log(self.run_dir, record)
            write_checkpoint(self.run_dir, self.state_dict())
            for cb in self.callbacks:
                cb.on_epoch_end(record)
        result = self._result()
        write_json(self.run_dir / RESULT_FILE, result)
        return result

    def _restore(self) -> None:
        """Continue from the checkpoint if there is one, dropping log lines written after it."""
        state = read_checkpoint(self.run_dir, self.device)
        if state is None:  # nothing to continue from: any logged epochs are stale
            truncate_log(self.run_dir, 0)
            return
        self.load_state_dict(state)
        truncate_log(self.run_dir, self.epoch)
        log.info("resumed %s after epoch %d", self.run_dir, self.epoch)

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def _run_epoch(self) -> dict[str, Any]:
        raise NotImplementedError

    def _result(self) -> dict[str, Any]:
        raise NotImplementedError


def run_or_resume(runner: Callable[..., Any], config_cls: type, cfg: Any, run_dir: str | os.PathLike,
                  device: torch.device | str, callbacks: Any, resume: bool, cache_dir: Any) -> dict[str, Any]:
    """Start `runner(cfg, path, device, callbacks, cache_dir).run()` in a new run directory, or continue one
    from its own config.json (resume=True, cfg ignored). Returns the result dict."""
    path = prepare_run_dir(run_dir, resume)
    if resume:
        cfg = read_config(path, config_cls)
    return runner(cfg, path, torch.device(device), callbacks, cache_dir).run()


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


__all__ = ["CONFIG_FILE", "LOG_FILE", "CHECKPOINT_FILE", "RESULT_FILE", "opt", "config_from_dict", "read_config",
           "atomic_write_bytes", "write_json", "read_log", "append_log", "truncate_log", "write_checkpoint",
           "read_checkpoint", "prepare_run_dir", "EpochCallback", "NullCallback"]
