"""Run directories shared by GAEA search and from-scratch training: config fields, files, atomic writes, callbacks."""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import field
from pathlib import Path
import subprocess
from typing import Any, Callable, TypeVar

import torch

from .errors import ConfigError

log = logging.getLogger(__name__)

CONFIG_FILE, LOG_FILE, CHECKPOINT_FILE, RESULT_FILE = "config.json", "log.jsonl", "checkpoint.pt", "result.json"
RUN_INFO_KEY = "run_info"  # config.json's record of what ran it (versions, commit, device); not a setting

C = TypeVar("C")


def opt(default: Any, help: str) -> Any:
    """A config field with its help text (shown by the CLI, which builds its flags from these fields)."""
    return field(default=default, metadata={"help": help})


def flag(name: str) -> str:
    """The command-line flag of a config field: arch_lr -> --arch-lr."""
    return "--" + name.replace("_", "-")


def config_from_dict(cls: type[C], values: dict[str, Any]) -> C:
    """Build a config dataclass from a dict (e.g. config.json), rejecting unknown keys."""
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown config key(s) {unknown}")
    return cls(**values)


def read_config(run_dir: str | os.PathLike, cls: type[C]) -> C:
    """The config a run directory was started with (its config.json, less its run_info) as a `cls`, built by
    `cls.from_saved(values)`, which also reads configs written by earlier versions."""
    path = Path(run_dir) / CONFIG_FILE
    try:
        values = json.loads(path.read_text())
        values.pop(RUN_INFO_KEY, None)
        return cls.from_saved(values)  # type: ignore[attr-defined]
    except FileNotFoundError:
        raise ConfigError(f"no {CONFIG_FILE} in {run_dir}") from None
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path} is not valid JSON: {err}") from None


def write_config(run_dir: Path, settings: dict[str, Any], device: torch.device) -> None:
    """config.json: the settings a run uses, plus run_info (what ran it, see provenance())."""
    write_json(run_dir / CONFIG_FILE, {**settings, RUN_INFO_KEY: provenance(device)})


def provenance(device: torch.device) -> dict[str, Any]:
    """The package version, its git commit and whether the tree was dirty (None outside a checkout),
    the torch version and the resolved device."""
    from . import __version__

    commit, dirty = _git_state(Path(__file__).resolve().parent)
    return {"gaeanas_version": __version__, "git_commit": commit, "git_dirty": dirty,
            "torch_version": torch.__version__, "device": str(device)}


def _git_state(folder: Path) -> tuple[str | None, bool | None]:
    """(HEAD commit, whether tracked files differ from it) of the checkout holding `folder`, or (None, None)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, check=True,
                              timeout=10).stdout.strip()
    try:
        return git("rev-parse", "HEAD"), bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None, None


def atomic_write_bytes(path: Path, write: Callable[[Path], Any]) -> None:
    """Call write(tmp_path), then rename over `path`, so a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    """A JSON file's content (a finished run's result.json, say)."""
    return json.loads(path.read_text())


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


__all__ = ["CONFIG_FILE", "LOG_FILE", "CHECKPOINT_FILE", "RESULT_FILE", "opt", "flag", "config_from_dict", "read_config",
           "atomic_write_bytes", "read_json", "write_json", "read_log", "append_log", "truncate_log", "write_checkpoint",
           "read_checkpoint", "prepare_run_dir", "write_config", "provenance", "RUN_INFO_KEY"]
