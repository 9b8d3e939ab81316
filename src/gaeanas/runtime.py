"""Device and precision choices, made in one place: device by name, bf16 autocast that is a no-op for fp32."""
from __future__ import annotations

import contextlib
from typing import ContextManager

import torch

from .errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16")


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when available, else CPU; 'cuda' fails clearly when there is no GPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.split(":")[0] not in DEVICES[1:]:
        raise ConfigError(f"unknown device {name!r}; use one of {DEVICES} (or cuda:N)")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but PyTorch sees no CUDA GPU here; use --device cpu")
    return torch.device(name)


def autocast(device: torch.device, precision: str) -> ContextManager:
    """Mixed precision for the forward pass: bf16 autocast, or nothing for fp32.

    Parameters (weights and architecture) and optimizer states stay in fp32 either way.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; known: {PRECISIONS}")
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
