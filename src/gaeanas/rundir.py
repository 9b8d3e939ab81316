"""Run directories shared by GAEA search and from-scratch training: config fields, files, atomic writes, callbacks."""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import io
import json
import logging
import math
import os
import subprocess
import typing
from dataclasses import field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

import torch

from .errors import ConfigError, RunDirError

log = logging.getLogger(__name__)

CONFIG_FILE, LOG_FILE, CHECKPOINT_FILE, RESULT_FILE = "config.json", "log.jsonl", "checkpoint.pt", "result.json"
PREVIOUS_CHECKPOINT_FILE = "checkpoint.prev.pt"  # the checkpoint before the last one, kept in case that one is damaged
LOCK_FILE = ".lock"  # flock()ed by the process that owns the run directory; holds its PID
RUN_INFO_KEY = "run_info"  # config.json's record of what ran it (versions, commit, device, kind); not a setting
# What a start that failed (or was killed) before its first checkpoint can leave behind; cleared on a new start.
START_FILES = frozenset({CONFIG_FILE, LOG_FILE, CONFIG_FILE + ".tmp", LOG_FILE + ".tmp", CHECKPOINT_FILE + ".tmp"})
CHECKPOINT_MAGIC = b"GAEANAS-CHECKPOINT 1\n"  # then one JSON header line (sha256, identity, epoch), then torch.save bytes
# Settings a resumed run may change without becoming another run (they do not change what is computed).
IDENTITY_IGNORES = frozenset({"device", "benchmark"})

C = TypeVar("C")


def opt(default: Any, help: str) -> Any:
    """A config field with its help text (shown by the CLI, which builds its flags from these fields)."""
    return field(default=default, metadata={"help": help})


def flag(name: str) -> str:
    """The command-line flag of a config field: arch_lr -> --arch-lr."""
    return "--" + name.replace("_", "-")


def config_from_dict(cls: type[C], values: dict[str, Any]) -> C:
    """Build a config dataclass from a dict (e.g. config.json), rejecting unknown keys and values of the wrong type."""
    if not isinstance(values, dict):
        raise ConfigError(f"settings must be a JSON object, got {type(values).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown setting(s) {unknown}")
    hints = typing.get_type_hints(cls)
    for name, value in values.items():
        if not _has_type(value, hints[name]):
            raise ConfigError(f"setting {name!r} should be {_type_name(hints[name])}, got {value!r}")
    return cls(**values)


def _has_type(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a config field's type hint (int, float, str, bool, dict, or X | None)."""
    args = typing.get_args(hint)
    if args and typing.get_origin(hint) is not dict:
        return any(_has_type(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, typing.get_origin(hint) or hint)


def _type_name(hint: Any) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false", type(None): "null",
             list: "a list"}
    args = typing.get_args(hint)
    if args and typing.get_origin(hint) is not dict:
        return " or ".join(_type_name(a) for a in args)
    return names.get(hint, "an object")


SEED_LIMIT = 2**32  # seeds are 0 .. 2**32 - 1 (each run derives its generators' seeds from it)


def check_run_settings(cfg: Any) -> None:
    """ConfigError for a non-finite number in any setting of a config dataclass, or a seed out of range."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{flag(f.name)} must be a finite number, got {value}")
    if not 0 <= cfg.seed < SEED_LIMIT:
        raise ConfigError(f"--seed must be between 0 and 2**32 - 1, got {cfg.seed}")


def run_kind(values: dict[str, Any]) -> str | None:
    """'search' or 'train': what a config.json's run is (run_info's kind, else told by its settings)."""
    info = values.get(RUN_INFO_KEY)
    if isinstance(info, dict) and info.get("kind"):
        return info["kind"]
    if "genotype" in values:
        return "train"
    return "search" if "method" in values else None


def read_config(run_dir: str | os.PathLike, cls: type[C]) -> C:
    """The config a run directory was started with (its config.json, less its run_info) as a `cls`, built by
    `cls.from_saved(values)`, which also reads configs written by earlier versions. A config.json that is not
    JSON, not an object, of another kind of run, or holds a setting of the wrong type is a one-line error."""
    path = Path(run_dir) / CONFIG_FILE
    try:
        values = json.loads(path.read_text())
    except FileNotFoundError:
        raise RunDirError(f"no {CONFIG_FILE} in {run_dir} (is it a gaeanas run directory?)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunDirError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(values, dict):
        raise RunDirError(f"{path} does not hold a run's settings (a JSON object); it holds {_type_name(type(values))}")
    kind, wanted = run_kind(values), getattr(cls, "KIND", None)
    if kind and wanted and kind != wanted:
        raise RunDirError(f"{run_dir} is a {kind} run, not a {wanted} run; continue it with: "
                          f"gaeanas {kind} --resume {run_dir}")
    values.pop(RUN_INFO_KEY, None)
    try:
        return cls.from_saved(values)  # type: ignore[attr-defined]
    except ConfigError as err:
        raise RunDirError(f"{path}: {err}") from None


def write_config(run_dir: Path, settings: dict[str, Any], device: torch.device, kind: str) -> None:
    """config.json: the settings a run uses, plus run_info (what ran it, see provenance(), and the run's kind)."""
    write_json(run_dir / CONFIG_FILE, {**settings, RUN_INFO_KEY: {**provenance(device), "kind": kind}})


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
    """Call write(tmp_path), flush it to disk, then rename over `path`, so a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    """A JSON file's content (a finished run's result.json, say); a damaged one is a one-line error."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RunDirError(f"{path} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunDirError(f"{path} is not valid JSON: {err}") from None


def write_json(path: Path, payload: Any) -> None:
    """Atomically write pretty, strict JSON (a non-finite number is written as null, with a warning)."""
    text = json.dumps(strict_json(payload, str(path)), indent=2, allow_nan=False) + "\n"
    atomic_write_bytes(path, lambda tmp: tmp.write_text(text))


def strict_json(value: Any, where: str = "") -> Any:
    """`value` with every NaN or infinity replaced by None, so that it serialises as standard JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        log.warning("%s: writing the non-finite number %s as null", where or "JSON", value)
        return None
    if isinstance(value, dict):
        return {k: strict_json(v, where) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v, where) for v in value]
    return value


def read_log(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The per-epoch records of a run's log.jsonl. A last line cut short by a crash is skipped (the checkpoint
    holds the records too); a damaged line before it is a one-line error."""
    path = Path(run_dir) / LOG_FILE
    if not path.exists():
        return []
    text = path.read_text(errors="replace")
    lines = text.splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines) and not text.endswith("\n"):
                log.warning("%s: skipping its last line, cut short (a crash while it was written)", path)
                break
            raise RunDirError(f"{path}, line {number}: not a JSON record") from None
    return records


def append_log(run_dir: Path, record: dict[str, Any]) -> None:
    """Add one epoch's record to log.jsonl."""
    with open(run_dir / LOG_FILE, "a") as f:
        f.write(_log_line(record))


def _log_line(record: dict[str, Any]) -> str:
    """One log.jsonl line: the record as strict JSON."""
    return json.dumps(strict_json(record, LOG_FILE), allow_nan=False) + "\n"


def write_log(run_dir: Path, records: list[dict[str, Any]]) -> None:
    """Replace log.jsonl, atomically, with these records (on resume: the checkpoint's own)."""
    text = "".join(_log_line(r) for r in records)
    atomic_write_bytes(run_dir / LOG_FILE, lambda tmp: tmp.write_text(text))


def config_identity(settings: dict[str, Any]) -> str:
    """A hash of a run's settings (less IDENTITY_IGNORES): a checkpoint records the identity of its run."""
    kept = {k: v for k, v in settings.items() if k not in IDENTITY_IGNORES}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]


def write_checkpoint(run_dir: Path, state: dict[str, Any], identity: str) -> None:
    """Write checkpoint.pt atomically, with a checksum and the run's identity; the one it replaces is kept as
    checkpoint.prev.pt (a hard link, so no copy is made and a good checkpoint always exists)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    header = {"sha256": hashlib.sha256(payload).hexdigest(), "bytes": len(payload), "identity": identity,
              "epoch": state.get("epoch")}
    path = run_dir / CHECKPOINT_FILE
    if path.exists():
        previous_tmp = run_dir / (PREVIOUS_CHECKPOINT_FILE + ".tmp")
        previous_tmp.unlink(missing_ok=True)
        os.link(path, previous_tmp)
        os.replace(previous_tmp, run_dir / PREVIOUS_CHECKPOINT_FILE)
    blob = CHECKPOINT_MAGIC + json.dumps(header).encode() + b"\n" + payload
    atomic_write_bytes(path, lambda tmp: tmp.write_bytes(blob))


class DamagedCheckpoint(Exception):
    """A checkpoint file that cannot be trusted (internal: read_checkpoint turns it into a RunDirError)."""


def load_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu", identity: str | None = None
                    ) -> dict[str, Any]:
    """The state in a checkpoint file, after checking its checksum (and, given `identity`, that it belongs to
    that run). Raises DamagedCheckpoint, or RunDirError for another run's checkpoint."""
    path = Path(path)
    blob = path.read_bytes()
    if not blob:
        raise DamagedCheckpoint("it is empty")
    if blob.startswith(CHECKPOINT_MAGIC):
        head_end = blob.find(b"\n", len(CHECKPOINT_MAGIC))
        try:
            header = json.loads(blob[len(CHECKPOINT_MAGIC):head_end])
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise DamagedCheckpoint("its header is damaged") from None
        payload = blob[head_end + 1:]
        if len(payload) != header.get("bytes") or hashlib.sha256(payload).hexdigest() != header.get("sha256"):
            raise DamagedCheckpoint(f"its checksum does not match ({len(payload)} of {header.get('bytes')} bytes)")
        if identity is not None and header.get("identity") != identity:
            raise RunDirError(f"{path} belongs to another run: its settings differ from those in {CONFIG_FILE}; "
                              f"move it away to start this run from scratch")
    else:  # written by gaeanas 0.2 or earlier: no checksum to check
        payload = blob
    try:
        state = torch.load(io.BytesIO(payload), map_location=device, weights_only=False)
    except Exception as err:  # torch/pickle raise many types on damaged data
        raise DamagedCheckpoint(f"it cannot be read: {type(err).__name__}") from None
    if not isinstance(state, dict) or "epoch" not in state:
        raise DamagedCheckpoint("it holds no training state")
    return state


def read_checkpoint(run_dir: Path, device: torch.device, identity: str) -> dict[str, Any] | None:
    """The run's checkpoint mapped onto `device`, or None when there is none yet. A damaged checkpoint, or one of
    another run, is a RunDirError that says whether an intact older checkpoint is kept, and how to use it."""
    path, previous = run_dir / CHECKPOINT_FILE, run_dir / PREVIOUS_CHECKPOINT_FILE
    if not path.exists():
        return None
    try:
        return load_checkpoint(path, device, identity)
    except DamagedCheckpoint as err:
        damage = f"{path} is damaged ({err})"
    if previous.exists():
        try:
            epoch = load_checkpoint(previous, torch.device("cpu"), identity)["epoch"]
        except (DamagedCheckpoint, RunDirError):
            pass
        else:
            raise RunDirError(f"{damage}; the checkpoint before it, after epoch {epoch}, is intact: to continue from "
                              f"it, run `mv {previous} {path}` and resume again")
    raise RunDirError(f"{damage}, and no intact older checkpoint is kept; start the run again in a new directory")


@contextlib.contextmanager
def claimed_run_dir(run_dir: str | os.PathLike, resume: bool) -> Iterator[Path]:
    """The run directory, owned by this process for the block (an exclusive lock naming its PID).

    A new run (resume=False) needs a directory that is absent, empty, or left by a start that failed before its
    first checkpoint (whose files are cleared); if the block fails before the first checkpoint is written, the
    run's files are removed again, so nothing is left that looks like a result. resume=True needs a config.json.
    """
    path = Path(run_dir)
    if path.exists() and not path.is_dir():
        raise RunDirError(f"run directory {path} exists and is a file, not a folder; choose another --out")
    if resume and not (path / CONFIG_FILE).is_file():
        raise RunDirError(f"cannot resume {path}: no {CONFIG_FILE} there (is it a gaeanas run directory?)")
    created = [d for d in (path, *path.parents) if not d.exists()]  # the folders this call makes, leaf first
    try:
        path.mkdir(parents=True, exist_ok=True)
        lock = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise RunDirError(f"cannot write the run directory {path}: {err.strerror or err}") from None
    try:
        _lock(lock, path)
        if not resume:
            _clear_failed_start(path)
        try:
            yield path
        except BaseException:
            if not resume and not (path / CHECKPOINT_FILE).exists():
                _remove_start_files(path, created)
            raise
    finally:
        os.close(lock)  # releases the lock


def _lock(fd: int, path: Path) -> None:
    """Take the run directory's lock, or refuse naming the process that holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno not in (errno.EAGAIN, errno.EACCES):
            raise
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        raise RunDirError(f"run directory {path} is in use by another gaeanas process (PID {holder}); wait for it "
                          "to finish, or choose another --out") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)


def _clear_failed_start(path: Path) -> None:
    """Make way for a new run: an empty directory, or one holding only what a failed start leaves."""
    entries = {p.name for p in path.iterdir()} - {LOCK_FILE}
    if not entries:
        return
    if CHECKPOINT_FILE in entries or RESULT_FILE in entries:
        raise RunDirError(f"run directory {path} already holds a run; use --resume {path} to continue it, "
                          "or choose another --out")
    if not entries <= START_FILES:
        raise RunDirError(f"run directory {path} already exists and is not empty; choose another --out")
    log.warning("clearing %s: a run started there but failed before its first checkpoint", path)
    _remove_start_files(path, created=())


def _remove_start_files(path: Path, created: Sequence[Path]) -> None:
    """Remove what a start that failed before its first checkpoint wrote, and the folders `created` for it."""
    for name in START_FILES:
        (path / name).unlink(missing_ok=True)
    if not created:
        return
    (path / LOCK_FILE).unlink(missing_ok=True)
    for folder in created:
        if any(folder.iterdir()):
            break
        folder.rmdir()


__all__ = ["CONFIG_FILE", "LOG_FILE", "CHECKPOINT_FILE", "PREVIOUS_CHECKPOINT_FILE", "RESULT_FILE", "LOCK_FILE",
           "opt", "flag", "config_from_dict", "check_run_settings", "read_config", "run_kind", "atomic_write_bytes", "read_json",
           "write_json", "strict_json", "read_log", "append_log", "write_log", "config_identity", "write_checkpoint", "load_checkpoint",
           "read_checkpoint", "claimed_run_dir", "write_config", "provenance", "RUN_INFO_KEY"]
