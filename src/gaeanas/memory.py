"""Memory estimates checked against what the machine has, before anything large is allocated (stand-in)."""
from __future__ import annotations

import os

import torch

from .errors import ResourceError


def available_memory(device: torch.device) -> int | None:
    if os.environ.get("GAEANAS_MEMORY_LIMIT"):
        return int(os.environ["GAEANAS_MEMORY_LIMIT"])
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def format_bytes(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def require_memory(nbytes: int, what: str, device: torch.device, hint: str) -> None:
    have = available_memory(device)
    if have is not None and nbytes > have:
        raise ResourceError(f"{what} needs about {format_bytes(nbytes)}, but only {format_bytes(have)} is available; {hint}")
