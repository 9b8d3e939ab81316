"""Memory estimates checked against what the machine has, before anything large is allocated."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from .errors import ConfigError, ResourceError

__all__ = ["MEMORY_LIMIT_ENV", "available_memory", "dataset_bytes", "format_bytes", "is_out_of_memory",
           "require_memory"]

log = logging.getLogger(__name__)

# Bytes; when set, replaces the measured free memory of every device (tests and capped runs use it).
MEMORY_LIMIT_ENV = "GAEANAS_MEMORY_LIMIT"
_MEMINFO = Path("/proc/meminfo")
_CGROUP = Path("/sys/fs/cgroup")  # cgroup v2: memory.max ("max" or bytes) and memory.current (bytes)
# torch's allocation failures: CUDA raises OutOfMemoryError, the CPU allocator a RuntimeError saying so.
_TORCH_OOM = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", MemoryError)
_CPU_OOM_TEXT = ("can't allocate memory", "not enough memory")
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def available_memory(device: torch.device | str) -> int | None:
    """Bytes that can still be allocated on `device`, or None when unknown (then nothing is refused).

    CPU: the smaller of MemAvailable (/proc/meminfo; else free pages from sysconf) and the headroom
    left under a cgroup v2 limit. CUDA: the free memory torch.cuda.mem_get_info reports.
    The environment variable GAEANAS_MEMORY_LIMIT (bytes) replaces the measurement.
    """
    override = _env_limit()
    if override is not None:
        return override
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type == "cpu":
        known = [v for v in (_host_available(), _cgroup_headroom()) if v is not None]
        return min(known) if known else None
    return None


def format_bytes(n: int | float) -> str:
    """`n` bytes in binary units with one decimal, e.g. "3.2 GiB" ("512 B" below one KiB)."""
    value, unit = float(n), 0
    while abs(value) >= 1024 and unit < len(_UNITS) - 1:
        value, unit = value / 1024, unit + 1
    return f"{int(n)} B" if unit == 0 else f"{value:.1f} {_UNITS[unit]}"


def dataset_bytes(n: int, channels: int, height: int, width: int) -> int:
    """Bytes of `n` uint8 images of `channels` x `height` x `width` (one byte per value)."""
    return int(n) * int(channels) * int(height) * int(width)


def require_memory(nbytes: int, what: str, device: torch.device | str, hint: str) -> None:
    """Raise ResourceError when `what` (e.g. "decoding 4 images at 64x64 from /data") needs more than
    `device` has free; `hint` (e.g. "use --resize N with a smaller N") ends the one-line message."""
    available = available_memory(device)
    if available is None or nbytes <= available:
        log.debug("%s needs about %s (%s available)", what, format_bytes(nbytes),
                  "unknown" if available is None else format_bytes(available))
        return
    where = "" if torch.device(device).type == "cpu" else f" on {device}"
    raise ResourceError(f"{what} needs about {format_bytes(nbytes)}, but only {format_bytes(available)} "
                        f"is available{where}; {hint}")


def is_out_of_memory(err: BaseException) -> bool:
    """Whether `err` is an allocation failure: MemoryError (Python, numpy), torch's OutOfMemoryError, or the
    RuntimeError torch's CPU allocator raises."""
    if isinstance(err, (MemoryError, _TORCH_OOM)):
        return True
    return isinstance(err, RuntimeError) and any(text in str(err) for text in _CPU_OOM_TEXT)


def _env_limit() -> int | None:
    """GAEANAS_MEMORY_LIMIT as bytes, None when unset."""
    raw = os.environ.get(MEMORY_LIMIT_ENV, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ConfigError(f"{MEMORY_LIMIT_ENV} must be a whole number of bytes, got {raw!r}")
    return value


def _host_available() -> int | None:
    """MemAvailable from /proc/meminfo, else free physical pages from sysconf, else None."""
    try:
        for line in _MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # reported in kB (KiB)
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        return None


def _cgroup_headroom() -> int | None:
    """memory.max minus memory.current of this cgroup (v2), or None when there is no numeric limit."""
    try:
        limit = (_CGROUP / "memory.max").read_text().strip()
    except OSError:
        return None
    if not limit.isdigit():  # "max": no limit
        return None
    try:
        used = int((_CGROUP / "memory.current").read_text().strip())
    except (OSError, ValueError):
        used = 0
    return max(int(limit) - used, 0)
